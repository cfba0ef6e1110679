"""Prototype (issue 19): test-time horizontal flip for `best` and `best_two_nets`.

    python flip_tta.py mirror        # mirrored copies of the 692 photos (PNG, lossless) + their maps
    python flip_tta.py cv SEED...    # 5-fold CV, the library's ridge (inner-CV lambda) per preset

The regression is trained on the photos as they are (the library's fit). Every cell map, the
training photos' inner out-of-fold maps (for BoxSearch's choice) and the test photos' maps,
is the average of the photo's map and its mirror's map mirrored back (13 x 13 cells reversed
along the columns). `base` is the same run without the flip (reproduces the library).
"""
import os, sys, tempfile, time, json
from dataclasses import replace
import numpy as np
from PIL import Image
from sensloc import nets, weights
from sensloc.data.datasets import read_manifest
from sensloc.evaluation.maps import Dataset, ensure_maps
from sensloc.evaluation.networks import network_identities
from sensloc.evaluation.reductions import reduce_dataset, close_rows
from sensloc.evaluation.runner import photo_to_input
from sensloc.evaluation.plots import object_sizes
from sensloc.localize.boxes import best_ious
from sensloc.localize.presets import preset
from sensloc.localize.folds import folds
from sensloc.localize.protocols.mix import BoxSearch
from sensloc.localize.protocols.objectness import box_coverage, _moments, _gram, _ridge
from sensloc.saliency import postprocess

from report import print_results

OUT = os.environ.get("FLIP_OUT", "/work/tiny-runs/flip")
SHARED = "/work/shared/data"
nets.configure_process(); nets.use_backend("numba")
WP = weights.resolve("squeezenet1_0"); net = weights.load(WP)
prep = net.preprocessing
ROOT = weights.default_cache_dir() / "maps"
GRID, SIZE = (13, 13), (227, 227)
RECORDS = read_manifest(f"{SHARED}/imagenet-val-227") + read_manifest(f"{SHARED}/imagenet-val-full")


def protocols():
    out = {}
    for name in ("best", "best_two_nets"):
        p = preset(name, "squeezenet1_0")
        out[name] = p.use_networks(network_identities(net, p.map_specs)) or p
    return out


def mirrored():
    os.makedirs(f"{OUT}/images", exist_ok=True)
    recs = []
    for r in RECORDS:
        path = f"{OUT}/images/{r.image_id}.png"
        if not os.path.exists(path):
            Image.open(r.path).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).save(path)
        b = np.array(r.boxes, np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = r.width - b[:, [2, 0]]
        recs.append(replace(r, path=type(r.path)(path), boxes=b, image_id=r.image_id + "-flip"))
    return recs


def features(records, ps):
    ds = Dataset(records)
    with tempfile.TemporaryDirectory(dir=ROOT) as spill:
        reduced, _ = reduce_dataset(net, ds, ps, ROOT, spill)
        X = {k: np.asarray(reduced[k]["features"][np.arange(len(records))], np.float32) for k in ps}
        close_rows(reduced)
    return X


def upmaps(cells):
    return postprocess.upsample(np.maximum(cells, 0).reshape(-1, *GRID).astype(np.float32), SIZE)


def unflip(cells):
    """(..., 169) cell maps of the mirrored photos, mirrored back."""
    return cells.reshape(*cells.shape[:-1], *GRID)[..., ::-1].reshape(cells.shape)


TINY = int(os.environ.get("FLIP_TINY", "0"))  # > 0: best_two_nets only, plus that many tiny photos
TINY_WEIGHTS, TINY_LAMS = (0.0, 0.1, 0.3), (1e4, 1e5, 1e6)


def cv(seeds):
    ps = protocols()
    tiny = None
    if TINY:
        from tiny_extra import tiny_gram
        tiny = dict(np.load(f"/work/tiny-runs/tiny-sums-{TINY}.npz"))
        ps = {"best_two_nets+tiny": ps["best_two_nets"]}
    X, XF = features(RECORDS, ps), features(mirrored(), ps)
    gt = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in RECORDS]
    targets = box_coverage(gt, SIZE, GRID).reshape(len(gt), -1)
    small = object_sizes(RECORDS) < 0.1
    several = np.array([len(np.reshape(r.boxes, (-1, 4))) > 1 for r in RECORDS])
    n = len(gt); t0 = time.time()
    for seed in seeds:
        fold = folds(n, 5, seed)
        hits = {}
        for name, p in ps.items():
            hb, hf = np.zeros(n, bool), np.zeros(n, bool)
            x, xf = X[name], XF[name]
            for f in range(5):
                train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
                Xt, tt = x[train], targets[train]
                mean, sd = _moments(Xt, np.arange(len(train)))
                sd = np.where(sd > 0, sd, 1.0)
                inner = folds(len(train), 5, seed=0)
                members = [np.flatnonzero(inner == g) for g in range(5)]
                parts = [_gram(Xt, m, tt, mean, sd) for m in members]
                G, M = sum(q[0] for q in parts), sum(q[1] for q in parts)
                grid = [(0.0, lam) for lam in p.lambdas]
                gt_, mt_ = 0.0, 0.0
                if tiny is not None:  # (w, lambda) jointly by the inner cell MSE, as tiny_extra's "nested"
                    gt_, mt_ = tiny_gram(tiny, mean, sd)
                    grid = [(w, lam) for w in TINY_WEIGHTS for lam in TINY_LAMS]
                oof = np.empty((len(grid), len(train), 169), np.float32)
                oofm = np.empty_like(oof)
                for m, (g, mo) in zip(members, parts):
                    W = np.stack([_ridge(G - g + w * gt_, M - mo + w * mt_, lam) for w, lam in grid], 1)
                    oof[:, m] = np.moveaxis(((Xt[m] - mean) / sd) @ W[:-1] + W[-1], -1, 0)
                    oofm[:, m] = np.moveaxis(((xf[train[m]] - mean) / sd) @ W[:-1] + W[-1], -1, 0)
                err = ((oof - tt[None]) ** 2).mean(axis=(1, 2))
                best = int(np.argmin(err))
                w = _ridge(G + grid[best][0] * gt_, M + grid[best][0] * mt_, grid[best][1])
                tc = ((x[test] - mean) / sd) @ w[:-1] + w[-1]
                tcm = ((xf[test] - mean) / sd) @ w[:-1] + w[-1]
                for h, o, t in ((hb, oof[best], tc), (hf, (oof[best] + unflip(oofm[best])) / 2, (tc + unflip(tcm)) / 2)):
                    bs = BoxSearch(); bs.fit([upmaps(o)], [gt[i] for i in train])
                    h[test] = best_ious(bs.predict([upmaps(t)]), [gt[i] for i in test]) >= 0.5
                print(seed, name, f, "w, lam", grid[best], f"{time.time() - t0:.0f}s", flush=True)
            hits[name] = hb; hits[name + "+flip"] = hf
        np.savez(f"{OUT}/hits{'-tiny' if TINY else ''}-s{seed}.npz", **hits)
        # with FLIP_TINY: against +tiny
        print_results(f"seed={seed}", hits, lambda v: v.replace("+flip", ""), small, several)

if __name__ == "__main__":
    if sys.argv[1] == "mirror":
        ps = protocols(); recs = mirrored()
        specs = tuple(dict.fromkeys(s for p in ps.values() for s in p.map_specs))
        t0 = time.time()
        ensure_maps(WP, net, Dataset(recs), specs, ROOT, 1, 8, False, None, tuple(ps.values()))
        print("mirrored maps", len(recs), time.time() - t0, flush=True)
    else:
        cv([int(v) for v in sys.argv[2:]])
