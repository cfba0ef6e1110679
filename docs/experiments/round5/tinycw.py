"""Prototype (issue 19, fifth round): class-weighted features (cw.py) with the tiny-imagenet photos
as extra ridge data (the third round's tiny_extra.py: w and lambda by the inner CV's cell MSE).

    python tinycw.py sums           # raw moments of the 5,106 tiny photos' extended features
    python tinycw.py cv SEED...
"""
import os, sys, tempfile, time
import numpy as np
sys.path.insert(0, "/work/cw-runs"); sys.path.insert(0, "/work/main/docs/experiments/tiny")
import cw
from cw import RECORDS, GRID, SIZE, prep, upmaps, block, ssqrt, W10, WFC, FIRE9, HEAD
from sensloc.data.datasets import read_manifest
from sensloc.evaluation.runner import photo_to_input
from sensloc.evaluation.plots import object_sizes
from sensloc.localize.boxes import best_ious
from sensloc.localize.folds import folds
from sensloc.localize.protocols.mix import BoxSearch
from sensloc.localize.protocols.objectness import box_coverage, _moments, _gram, _ridge
from report import print_results

SUMS = "/work/cw-runs/tiny-cw-sums-5106.npz"
GRID_WL = [(w, lam) for w in (0.0, 0.1, 0.3) for lam in (1e4, 1e5, 1e6)]


def extend(rows, cls):
    """(B, 169, 2468) base features of photos of classes cls -> (B, 169, 4260)."""
    a9, ah = rows[:, :, FIRE9], rows[:, :, HEAD]
    return np.concatenate([rows, ssqrt(a9 * a9 * W10[cls][:, None]),
                           ssqrt(ah * ah * WFC[cls + 1][:, None])], axis=2)


def sums():
    import tiny_extra as te
    from sensloc.evaluation.maps import Dataset
    import sensloc.evaluation.reductions as reductions
    from sensloc.evaluation.reductions import close_rows
    # The tiny photos' reductions were cached under best_two_nets' key before BoxSearch took
    # modes (the features are the same; checked equal to X-base.npy on dev photos): read those.
    reductions.reduction_key = lambda p: "0d7191c1b26df04a"
    reduce_dataset = reductions.reduce_dataset
    recs = read_manifest(f"{te.SHARED}/tiny-imagenet-val")
    order = np.random.default_rng(0).permutation(len(recs))
    recs = [recs[i] for i in order]
    ds, gt, t = te.features(recs)
    cls = np.array([r.class_index for r in recs]); k = len(recs)
    t0 = time.time()
    d = 2468 + 512 + 1280
    sxx, sx, sxt = np.zeros((d, d)), np.zeros(d), np.zeros(d)
    for c0 in range(0, k, 512):  # in memory, 512 photos at a time (no spill file on disk)
        part = list(range(c0, min(c0 + 512, k)))
        reduced, _ = reduce_dataset(te.net, Dataset([recs[i] for i in part]), {"two": te.P0}, te.ROOT, None)
        X = reduced["two"]["features"]
        for a in range(0, len(part), 32):
            idx = np.arange(a, min(a + 32, len(part)))
            rows = extend(np.asarray(X[idx], np.float32), cls[c0 + idx]).astype(np.float64).reshape(-1, d)
            tt = t[c0 + idx].reshape(-1)
            sxx += rows.T @ rows; sx += rows.sum(0); sxt += rows.T @ tt
        close_rows(reduced)
        print("sums", c0, time.time() - t0, flush=True)
    np.savez(SUMS, sxx=sxx, sx=sx, sxt=sxt, st=t.sum(), n=t.size, tmean=t.mean())
    print("saved", k, d, time.time() - t0, flush=True)


def cv(seeds):
    from tiny_extra import tiny_gram
    tiny = dict(np.load(SUMS))
    x = np.ascontiguousarray(np.concatenate([block(b) for b in ("base", "cf9", "chd")], axis=2))
    gt = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in RECORDS]
    targets = box_coverage(gt, SIZE, GRID).reshape(len(gt), -1)
    small = object_sizes(RECORDS) < 0.1
    several = np.array([len(np.reshape(r.boxes, (-1, 4))) > 1 for r in RECORDS])
    n = len(gt); t0 = time.time()
    for seed in seeds:
        fold = folds(n, 5, seed)
        hits = {k: np.zeros(n, bool) for k in ("union+largest", "union")}
        for f in range(5):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            Xt, tt = x[train], targets[train]
            mean, sd = _moments(Xt, np.arange(len(train)))
            sd = np.where(sd > 0, sd, 1.0)
            inner = folds(len(train), 5, seed=0)
            members = [np.flatnonzero(inner == g) for g in range(5)]
            parts = [_gram(Xt, m, tt, mean, sd) for m in members]
            G, M = sum(q[0] for q in parts), sum(q[1] for q in parts)
            gt_, mt_ = tiny_gram(tiny, mean, sd)
            oof = np.empty((len(GRID_WL), len(train), 169), np.float32)
            for m, (g, mo) in zip(members, parts):
                W = np.stack([_ridge(G - g + w * gt_, M - mo + w * mt_, lam) for w, lam in GRID_WL], 1)
                oof[:, m] = np.moveaxis(((Xt[m] - mean) / sd) @ W[:-1] + W[-1], -1, 0)
            err = ((oof - tt[None]) ** 2).mean(axis=(1, 2))
            k = int(np.argmin(err)); w, lam = GRID_WL[k]
            wts = _ridge(G + w * gt_, M + w * mt_, lam)
            tc = ((x[test] - mean) / sd) @ wts[:-1] + wts[-1]
            mse = float(((tc - targets[test]) ** 2).mean())
            for modes in (("union", "largest"), ("union",)):
                bs = BoxSearch(modes=modes).fit([upmaps(oof[k])], [gt[i] for i in train])
                hits["+".join(modes)][test] = best_ious(bs.predict([upmaps(tc)]), [gt[i] for i in test]) >= 0.5
            print(seed, f, (w, lam), f"inner {err[k]:.4f} test {mse:.4f}", bs.params()["mode"],
                  f"{time.time() - t0:.0f}s", flush=True)
        np.savez(f"/work/cw-runs/tinycw-hits-s{seed}.npz", **hits)
        print_results(f"seed={seed} tiny+cw", hits, lambda v: "union+largest", small, several)


if __name__ == "__main__":
    sums() if sys.argv[1] == "sums" else cv([int(v) for v in sys.argv[2:]])
