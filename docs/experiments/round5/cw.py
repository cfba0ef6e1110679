"""Prototype (issue 19, fifth round): class-weighted activations as more cell features.

For the known class c, the channel contributions to the class score at every cell:
SqueezeNet fire9 a_j W_conv_final[c, j] (512) and MobileNetV2 head_relu6 (resampled to 13x13)
a_j W_classifier[c + 1, j] (1280), put through a signed square root. Then best_two_nets'
ridge (inner-CV lambda) and BoxSearch(modes=("union", "largest")).

    python cw.py VARIANT[,VARIANT...] SEED...
"""
import sys, time
import numpy as np
sys.path.insert(0, "/work/main/docs/experiments/tiny")
from sensloc import nets, weights
from sensloc.data.datasets import read_manifest
from sensloc.evaluation.runner import photo_to_input
from sensloc.evaluation.plots import object_sizes
from sensloc.localize.boxes import best_ious
from sensloc.localize.folds import folds
from sensloc.localize.protocols.mix import BoxSearch
from sensloc.localize.protocols.objectness import box_coverage, _moments, _gram, _ridge
from sensloc.saliency import postprocess
from report import print_results

sq = weights.load(weights.resolve("squeezenet1_0")); prep = sq.preprocessing
mn = weights.load(weights.resolve("mobilenet_v2"))
W10 = sq.parameters()["conv_final"]["weight"][:, :, 0, 0].astype(np.float32)
WFC = mn.parameters()["classifier"]["weight"].astype(np.float32)
GRID, SIZE = (13, 13), (227, 227)
S = "/work/shared/data"
RECORDS = read_manifest(f"{S}/imagenet-val-227") + read_manifest(f"{S}/imagenet-val-full")
LAMS = tuple(10.0 ** np.arange(0, 8))
CLS = np.array([r.class_index for r in RECORDS])
X0 = np.load("/work/ms-runs/X-base.npy", mmap_mode="r")
FIRE9, HEAD = slice(512, 1024), slice(1184, 2464)


def ssqrt(x):
    return np.sign(x) * np.sqrt(np.abs(x))


def block(name):
    if name == "base":
        return np.asarray(X0)
    if name in ("cf9", "lf9"):
        a, w = np.asarray(X0[:, :, FIRE9]), W10[CLS][:, None, :]
    elif name in ("chd", "lhd"):
        a, w = np.asarray(X0[:, :, HEAD]), WFC[CLS + 1][:, None, :]
    if name[0] == "c":
        return ssqrt(a * a * w).astype(np.float32)
    return (a * w).astype(np.float32)


def upmaps(cells):
    return postprocess.upsample(np.maximum(cells, 0).reshape(-1, *GRID).astype(np.float32), SIZE)


def run(variants, seeds):
    gt = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in RECORDS]
    targets = box_coverage(gt, SIZE, GRID).reshape(len(gt), -1)
    small = object_sizes(RECORDS) < 0.1
    several = np.array([len(np.reshape(r.boxes, (-1, 4))) > 1 for r in RECORDS])
    n = len(gt); t0 = time.time()
    for seed in seeds:
        fold = folds(n, 5, seed)
        hits = {}
        for v in variants:
            x = np.ascontiguousarray(np.concatenate([block(b) for b in v.split("+")], axis=2))
            print(v, x.shape, flush=True)
            h = np.zeros(n, bool)
            cells = {}
            for f in range(5):
                train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
                Xt, tt = x[train], targets[train]
                mean, sd = _moments(Xt, np.arange(len(train)))
                sd = np.where(sd > 0, sd, 1.0)
                inner = folds(len(train), 5, seed=0)
                members = [np.flatnonzero(inner == g) for g in range(5)]
                parts = [_gram(Xt, m, tt, mean, sd) for m in members]
                G, M = sum(q[0] for q in parts), sum(q[1] for q in parts)
                oof = np.empty((len(LAMS), len(train), 169), np.float32)
                for m, (g, mo) in zip(members, parts):
                    W = np.stack([_ridge(G - g, M - mo, lam) for lam in LAMS], 1)
                    oof[:, m] = np.moveaxis(((Xt[m] - mean) / sd) @ W[:-1] + W[-1], -1, 0)
                err = ((oof - tt[None]) ** 2).mean(axis=(1, 2))
                best = int(np.argmin(err))
                w = _ridge(G, M, LAMS[best])
                tc = ((x[test] - mean) / sd) @ w[:-1] + w[-1]
                mse = float(((tc - targets[test]) ** 2).mean())
                cells[f"oof{f}"], cells[f"test{f}"] = oof[best], tc.astype(np.float32)
                bs = BoxSearch(modes=("union", "largest"))
                bs.fit([upmaps(oof[best])], [gt[i] for i in train])
                h[test] = best_ious(bs.predict([upmaps(tc)]), [gt[i] for i in test]) >= 0.5
                print(seed, v, f, "lam", LAMS[best], f"inner mse {err[best]:.4f} test mse {mse:.4f}",
                      bs.params()["mode"], f"{time.time() - t0:.0f}s", flush=True)
            hits[v] = h
            np.savez(f"/work/cw-runs/cells-{v}-s{seed}.npz", fold=fold, **cells)
            del x
        np.savez(f"/work/cw-runs/hits-{'_'.join(hits)}-s{seed}.npz", **hits)
        print_results(f"seed={seed}", hits, lambda v: variants[0], small, several)


if __name__ == "__main__":
    run(sys.argv[1].split(","), [int(v) for v in sys.argv[2:]])
