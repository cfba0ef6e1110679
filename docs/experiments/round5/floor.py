"""Prototype (issue 19, fifth round): a per-photo floor under BoxSearch's threshold.

The cell map m (best_two_nets' ridge, captured per outer fold) becomes max(m - b, 0) with b the
photo's q-quantile of its own upsampled map, so the threshold f * max of the search becomes
b + f (max - b): a flat map (a small object's weak peak over a lifted background) is cut
higher. q in QS is one more parameter, chosen by training CorLoc per fold (q = 0 is the
library: no floor; ties go to it).

    python floor.py CELLS SEED...   (CELLS: /work/loc76-runs/cells-base-s{seed}.npz pattern)
"""
import sys, time
sys.path.insert(0, "/work/loc76-runs"); sys.path.insert(0, "/work/main/docs/experiments/tiny")
import numpy as np
from boxstage import gt, upmaps, small, several
from sensloc.localize.boxes import best_ious
from sensloc.localize.protocols.mix import BoxSearch
from report import print_results

QS = (0.0, 0.25, 0.5, 0.75, 0.9)


def floored(maps, q):
    if q == 0:
        return maps
    b = np.quantile(maps.reshape(len(maps), -1), q, axis=1).astype(np.float32)
    return np.maximum(maps - b[:, None, None], 0)


pattern = sys.argv[1]; t0 = time.time()
for seed in [int(s) for s in sys.argv[2:]]:
    d = np.load(pattern.format(seed=seed)); fold = d["fold"]; n = len(gt)
    hits = {k: np.zeros(n, bool) for k in ["q0", "chosen"] + [f"q{q}" for q in QS[1:]]}
    for f in range(5):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        otr, ote = upmaps(d[f"oof{f}"]), upmaps(d[f"test{f}"])
        best = None
        for q in QS:
            bs = BoxSearch(modes=("union", "largest")).fit([floored(otr, q)], [gt[i] for i in tr])
            h = best_ious(bs.predict([floored(ote, q)]), [gt[i] for i in te]) >= 0.5
            hits["q0" if q == 0 else f"q{q}"][te] = h
            acc = float((best_ious(bs.predict([floored(otr, q)]), [gt[i] for i in tr]) >= 0.5).mean())
            if best is None or acc > best[0]:
                best = (acc, q, h)
            print(seed, f, q, f"train {acc:.3f} test {h.mean():.3f}", bs.params()["mode"],
                  bs.params().get("fraction"), f"{time.time()-t0:.0f}s", flush=True)
        hits["chosen"][te] = best[2]
        print(seed, f, "chose q", best[1], flush=True)
    print_results(f"seed={seed}", hits, lambda v: "q0", small, several)
    np.savez(pattern.format(seed=seed).replace(".npz", "-floor-hits.npz").replace("/loc76-runs/", "/cw-runs/"), **hits)
