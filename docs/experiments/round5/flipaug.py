"""Prototype (issue 19, fifth round): mirrored copies of the training photos as more training
data for best_two_nets' ridge (not only test-time averaging).

In every outer fold, the Gram matrix is the training photos' plus w times their mirrors'
(features of the mirrored photo, targets mirrored); an inner member's mirrors are held out
with it. (w, lambda) by the inner CV's cell MSE on the original held-out photos; standardized
with the original training photos' moments. Then BoxSearch(modes=("union", "largest")).
Variants: `aug` (w, lambda nested), `aug+tta` (the same ridge, cell maps averaged with the
mirror's map mirrored back).

    python flipaug.py EXTRA SEED...     EXTRA: base | base+cf9 (cw.py's blocks)
"""
import sys, time
import numpy as np
sys.path.insert(0, "/work/cw-runs")
import cw
from cw import RECORDS, GRID, SIZE, prep, upmaps, block
from sensloc.evaluation.runner import photo_to_input
from sensloc.evaluation.plots import object_sizes
from sensloc.localize.boxes import best_ious
from sensloc.localize.folds import folds
from sensloc.localize.protocols.mix import BoxSearch
from sensloc.localize.protocols.objectness import box_coverage, _moments, _gram, _ridge
from report import print_results

WEIGHTS = (0.0, 0.5, 1.0)
LAMS = tuple(10.0 ** np.arange(3, 8))


def unflip(cells):
    return cells.reshape(*cells.shape[:-1], *GRID)[..., ::-1].reshape(cells.shape)


def mirrored_block(name):
    saved = cw.X0
    cw.X0 = np.load("/work/ms-runs/X-flip.npy", mmap_mode="r")
    try:
        return block(name)
    finally:
        cw.X0 = saved


def run(extra, seeds):
    names = extra.split("+")
    x = np.ascontiguousarray(np.concatenate([block(b) for b in names], axis=2))
    xf = np.ascontiguousarray(np.concatenate([mirrored_block(b) for b in names], axis=2))
    gt = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in RECORDS]
    targets = box_coverage(gt, SIZE, GRID).reshape(len(gt), -1)
    tflip = unflip(targets)
    small = object_sizes(RECORDS) < 0.1
    several = np.array([len(np.reshape(r.boxes, (-1, 4))) > 1 for r in RECORDS])
    n = len(gt); t0 = time.time()
    for seed in seeds:
        fold = folds(n, 5, seed)
        hits = {k: np.zeros(n, bool) for k in ("noaug", "aug", "aug+tta", "aug1")}
        for f in range(5):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            Xt, XFt, tt, tft = x[train], xf[train], targets[train], tflip[train]
            mean, sd = _moments(Xt, np.arange(len(train)))
            sd = np.where(sd > 0, sd, 1.0)
            inner = folds(len(train), 5, seed=0)
            members = [np.flatnonzero(inner == g) for g in range(5)]
            parts = [_gram(Xt, m, tt, mean, sd) for m in members]
            mparts = [_gram(XFt, m, tft, mean, sd) for m in members]
            G, M = sum(q[0] for q in parts), sum(q[1] for q in parts)
            GF, MF = sum(q[0] for q in mparts), sum(q[1] for q in mparts)
            grid = [(w, lam) for w in WEIGHTS for lam in LAMS]
            oof = np.empty((len(grid), len(train), 169), np.float32); oofm = np.empty_like(oof)
            for m, (g, mo), (gf, mf) in zip(members, parts, mparts):
                W = np.stack([_ridge(G - g + w * (GF - gf), M - mo + w * (MF - mf), lam)
                              for w, lam in grid], 1)
                oof[:, m] = np.moveaxis(((Xt[m] - mean) / sd) @ W[:-1] + W[-1], -1, 0)
                oofm[:, m] = np.moveaxis(((XFt[m] - mean) / sd) @ W[:-1] + W[-1], -1, 0)
            err = ((oof - tt[None]) ** 2).mean(axis=(1, 2))
            choices = {"noaug": int(np.argmin(np.where([w == 0 for w, _ in grid], err, np.inf))),
                       "aug": int(np.argmin(err)),
                       "aug1": int(np.argmin(np.where([w == 1 for w, _ in grid], err, np.inf)))}
            choices["aug+tta"] = choices["aug"]
            for name, k in choices.items():
                w, lam = grid[k]
                wts = _ridge(G + w * GF, M + w * MF, lam)
                tc = ((x[test] - mean) / sd) @ wts[:-1] + wts[-1]
                o = oof[k]
                if name.endswith("tta"):
                    tc = (tc + unflip(((xf[test] - mean) / sd) @ wts[:-1] + wts[-1])) / 2
                    o = (o + unflip(oofm[k])) / 2
                bs = BoxSearch(modes=("union", "largest"))
                bs.fit([upmaps(o)], [gt[i] for i in train])
                hits[name][test] = best_ious(bs.predict([upmaps(tc)]), [gt[i] for i in test]) >= 0.5
                mse = float(((tc - targets[test]) ** 2).mean())
                print(seed, extra, f, name, (w, lam), f"inner {err[k]:.4f} test {mse:.4f}",
                      bs.params()["mode"], f"{time.time() - t0:.0f}s", flush=True)
        np.savez(f"/work/cw-runs/flipaug-{extra}-s{seed}.npz", **hits)
        print_results(f"seed={seed} {extra}", hits, lambda v: "noaug", small, several)


if __name__ == "__main__":
    run(sys.argv[1], [int(v) for v in sys.argv[2:]])
