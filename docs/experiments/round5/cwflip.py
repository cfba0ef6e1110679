"""Prototype (issue 19, fifth round): class-weighted features (cw.py) with test-time flip
(and, with TINY=1, the tiny photos as extra ridge data: tinycw.py's sums, (w, lambda) in
{0, 0.1, 0.3} x {1e4, 1e5, 1e6} by the inner cell MSE).

The ridge as cw.py (trained on the photos as they are, inner-CV lambda); every cell map (the
training photos' inner out-of-fold maps and the test maps) is the mean of the photo's map and
its mirror's map mirrored back; BoxSearch with the union box alone, or union or largest region.

    python cwflip.py BLOCKS SEED...
"""
import os, sys, time
import numpy as np
sys.path.insert(0, "/work/cw-runs")
from cw import RECORDS, GRID, SIZE, prep, upmaps, block, LAMS
from flipaug import mirrored_block, unflip
from sensloc.evaluation.runner import photo_to_input
from sensloc.evaluation.plots import object_sizes
from sensloc.localize.boxes import best_ious
from sensloc.localize.folds import folds
from sensloc.localize.protocols.mix import BoxSearch
from sensloc.localize.protocols.objectness import box_coverage, _moments, _gram, _ridge
from report import print_results
TINY = os.environ.get('TINY') == '1'


def run(extra, seeds):
    names = extra.split("+")
    x = np.ascontiguousarray(np.concatenate([block(b) for b in names], axis=2))
    xf = np.ascontiguousarray(np.concatenate([mirrored_block(b) for b in names], axis=2))
    gt = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in RECORDS]
    targets = box_coverage(gt, SIZE, GRID).reshape(len(gt), -1)
    small = object_sizes(RECORDS) < 0.1
    several = np.array([len(np.reshape(r.boxes, (-1, 4))) > 1 for r in RECORDS])
    n = len(gt); t0 = time.time()
    for seed in seeds:
        fold = folds(n, 5, seed)
        hits = {k: np.zeros(n, bool) for k in ("union", "union+largest", "tta-union", "tta-union+largest")}
        for f in range(5):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            Xt, tt = x[train], targets[train]
            mean, sd = _moments(Xt, np.arange(len(train)))
            sd = np.where(sd > 0, sd, 1.0)
            inner = folds(len(train), 5, seed=0)
            members = [np.flatnonzero(inner == g) for g in range(5)]
            parts = [_gram(Xt, m, tt, mean, sd) for m in members]
            G, M = sum(q[0] for q in parts), sum(q[1] for q in parts)
            grid, gt_, mt_ = [(0.0, lam) for lam in LAMS], 0.0, 0.0
            if TINY:
                from tiny_extra import tiny_gram
                from tinycw import GRID_WL, SUMS
                gt_, mt_ = tiny_gram(dict(np.load(SUMS)), mean, sd)
                grid = GRID_WL
            oof = np.empty((len(grid), len(train), 169), np.float32); oofm = np.empty_like(oof)
            for m, (g, mo) in zip(members, parts):
                W = np.stack([_ridge(G - g + w * gt_, M - mo + w * mt_, lam) for w, lam in grid], 1)
                oof[:, m] = np.moveaxis(((Xt[m] - mean) / sd) @ W[:-1] + W[-1], -1, 0)
                oofm[:, m] = np.moveaxis(((xf[train[m]] - mean) / sd) @ W[:-1] + W[-1], -1, 0)
            err = ((oof - tt[None]) ** 2).mean(axis=(1, 2))
            k = int(np.argmin(err))
            w = _ridge(G + grid[k][0] * gt_, M + grid[k][0] * mt_, grid[k][1])
            tc = ((x[test] - mean) / sd) @ w[:-1] + w[-1]
            tcm = ((xf[test] - mean) / sd) @ w[:-1] + w[-1]
            views = {"": (oof[k], tc), "tta-": ((oof[k] + unflip(oofm[k])) / 2, (tc + unflip(tcm)) / 2)}
            for prefix, (o, t) in views.items():
                for modes in (("union",), ("union", "largest")):
                    bs = BoxSearch(modes=modes).fit([upmaps(o)], [gt[i] for i in train])
                    hits[prefix + "+".join(modes)][test] = best_ious(bs.predict([upmaps(t)]), [gt[i] for i in test]) >= 0.5
                    print(seed, extra, f, prefix + "+".join(modes), grid[k], bs.params()["mode"],
                          f"{time.time() - t0:.0f}s", flush=True)
        np.savez(f"/work/cw-runs/cwflip{'-tiny' if TINY else ''}-{extra}-s{seed}.npz", **hits)
        print_results(f"seed={seed} {extra}", hits, lambda v: "union+largest", small, several)


if __name__ == "__main__":
    run(sys.argv[1], [int(v) for v in sys.argv[2:]])
