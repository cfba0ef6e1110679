"""The table of docs/experiments/objectness.md's tiny/flip section, from the saved per-photo hits."""
import os
import numpy as np
from sensloc.data.datasets import read_manifest
from sensloc.evaluation.plots import object_sizes
from sensloc.localize.metrics import bootstrap_ci

R = os.environ.get("TINY_OUT", "/work/tiny-runs")
records = read_manifest("/work/shared/data/imagenet-val-227") + read_manifest("/work/shared/data/imagenet-val-full")
small = object_sizes(records) < 0.1
several = np.array([len(np.reshape(r.boxes, (-1, 4))) > 1 for r in records])
ROWS = [("best", "flip", "best"), ("best_two_nets", "flip", "best_two_nets"),
        ("+ tiny, (w, lambda) by inner cell MSE", "tiny", "nested"),
        ("+ tiny, w by inner BoxSearch CorLoc", "tiny", "nested_corloc"),
        ("+ tiny, w = 0.03 fixed", "tiny", "w=0.03"), ("+ tiny, w = 0.1 fixed", "tiny", "w=0.1"),
        ("+ tiny, w = 0.3 fixed", "tiny", "w=0.3"), ("+ tiny, w = 1 fixed", "tiny", "w=1"),
        ("best + flip", "flip", "best+flip"), ("best_two_nets + flip", "flip", "best_two_nets+flip"),
        ("best_two_nets + tiny (MSE) + flip", "fliptiny", "best_two_nets+tiny+flip")]
files = {"flip": R + "/flip/hits-s{}.npz", "tiny": R + "/hits-k5106-s{}.npz", "fliptiny": R + "/flip/hits-tiny-s{}.npz"}
for name, src, key in ROWS:
    for seed in (0, 1, 2):
        path = files[src].format(seed)
        if not os.path.exists(path) or key not in np.load(path):
            continue
        h = np.load(path)[key]
        base = np.load(files["flip"].format(seed))["best_two_nets"]
        lo, hi = bootstrap_ci(h)
        d = h.astype(float) - base
        rng = np.random.default_rng(0)
        b = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(10000)]
        diff = "-" if key == "best_two_nets" else f"{100*d.mean():+.1f} [{100*np.percentile(b, 2.5):+.1f}, {100*np.percentile(b, 97.5):+.1f}]"
        print(f"{name if seed == 0 else '':<40} {seed}  {100*h.mean():.1f}% ({100*lo:.1f}-{100*hi:.1f})  {diff:<18} "
              f"{h[small].sum():>2}/67  {100*h[several].mean():.1f}% ({h[several].sum()}/136)")
