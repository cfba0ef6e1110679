"""Prototype (issue 19): tiny-imagenet-val photos as extra, weighted training data for
best_two_nets' cell-wise ridge regression. Never test data.

    python tiny_extra.py sums K        # raw moments of the first K tiny photos (seeded order)
    python tiny_extra.py cv K SEED...  # 5-fold CV on the 692 development photos

Every outer fold: standardization (mean, sd) of the dev training photos (as the library);
Gram = dev training Gram + w * tiny Gram (the tiny rows standardized with the same mean, sd);
(lambda, w) chosen jointly by the inner 5-fold CV over the dev training photos only (tiny
photos in every inner training set, scored on held-out dev photos only, cell MSE like the
library); BoxSearch fitted on the dev training photos' inner out-of-fold maps; test fold boxed.
w = 0 alone is best_two_nets (reproduces the library's numbers when lambda is chosen the same way).
Maps of the tiny photos: the library's preprocessing (64x64 squashed to 227 / 224), their
manifest's class_index (ILSVRC2012 sorted-wnid order, synset_words.txt), cached by
``ensure_maps`` (tmaps.py).
"""
import os, sys, tempfile, time, json
import numpy as np
from sensloc import nets, weights
from sensloc.data.datasets import read_manifest
from sensloc.evaluation.maps import Dataset
from sensloc.evaluation.networks import network_identities
from sensloc.evaluation.reductions import reduce_dataset, close_rows
from sensloc.evaluation.runner import photo_to_input
from sensloc.evaluation.plots import object_sizes
from sensloc.localize.boxes import best_ious
from sensloc.localize.presets import preset
from sensloc.localize.folds import folds
from sensloc.localize.protocols.mix import BoxSearch
from sensloc.localize.protocols.objectness import box_coverage, _moments, _gram, _ridge, LAMBDAS_WIDE
from sensloc.saliency import postprocess

from report import print_results

OUT = os.environ.get("TINY_OUT", "/work/tiny-runs")
SHARED = "/work/shared/data"
WEIGHTS = (0.0, 0.03, 0.1, 0.3, 1.0)
LAMS = LAMBDAS_WIDE[2:]  # 10^2..10^7 (the library's inner CV chose 10^5 in every fold)
nets.configure_process(); nets.use_backend("numba")
net = weights.load(weights.resolve("squeezenet1_0"))
prep = net.preprocessing
P0 = preset("best_two_nets", "squeezenet1_0")
P0.use_networks(network_identities(net, P0.map_specs))
ROOT = weights.default_cache_dir() / "maps"
GRID, SIZE = (13, 13), (227, 227)


def features(records):
    """(reduced features as an in-memory float32 array or a RowFile, targets (N, 169))."""
    ds = Dataset(records)
    gt = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in records]
    return ds, gt, box_coverage(gt, SIZE, GRID).reshape(len(gt), -1)


def tiny_sums(k):
    recs = read_manifest(f"{SHARED}/tiny-imagenet-val")
    order = np.random.default_rng(0).permutation(len(recs))[:k]
    ds, gt, t = features([recs[i] for i in order])
    t0 = time.time()
    with tempfile.TemporaryDirectory(dir=ROOT) as spill:
        reduced, _ = reduce_dataset(net, ds, {"two": P0}, ROOT, spill)
        X = reduced["two"]["features"]
        d = X.shape[2]
        sxx, sx, sxt = np.zeros((d, d)), np.zeros(d), np.zeros(d)
        for a in range(0, k, 32):
            idx = np.arange(a, min(a + 32, k))
            rows = np.asarray(X[idx], np.float64).reshape(-1, d)
            tt = t[idx].reshape(-1)
            sxx += rows.T @ rows; sx += rows.sum(0); sxt += rows.T @ tt
            if a % 320 == 0:
                print("sums", a, time.time() - t0, flush=True)
        close_rows(reduced)
    np.savez(f"{OUT}/tiny-sums-{k}.npz", sxx=sxx, sx=sx, sxt=sxt, st=t.sum(), n=t.size, tmean=t.mean())
    print("saved", k, "photos", d, "features", time.time() - t0, flush=True)


def tiny_gram(s, mean, sd):
    """Z^T Z and Z^T t of the tiny rows standardized by (mean, sd), with the bias column."""
    n = float(s["n"]); sx = s["sx"]
    a = s["sxx"] - np.outer(mean, sx) - np.outer(sx, mean) + n * np.outer(mean, mean)
    a = a / sd[:, None] / sd[None, :]
    b = (sx - n * mean) / sd
    d = len(mean) + 1
    g = np.empty((d, d)); g[:-1, :-1] = a; g[:-1, -1] = b; g[-1, :-1] = b; g[-1, -1] = n
    m = np.empty(d); m[:-1] = (s["sxt"] - mean * s["st"]) / sd; m[-1] = s["st"]
    return g, m


def upmaps(cells):
    return postprocess.upsample(np.maximum(cells, 0).reshape(-1, *GRID).astype(np.float32), SIZE)


def cv(k, seeds):
    records = read_manifest(f"{SHARED}/imagenet-val-227") + read_manifest(f"{SHARED}/imagenet-val-full")
    ds, gt, targets = features(records)
    small = object_sizes(records) < 0.1
    several = np.array([len(np.reshape(r.boxes, (-1, 4))) > 1 for r in records])
    with tempfile.TemporaryDirectory(dir=ROOT) as spill:
        reduced, _ = reduce_dataset(net, ds, {"two": P0}, ROOT, spill)
        X = np.asarray(reduced["two"]["features"][np.arange(len(gt))], np.float32)
        close_rows(reduced)
    s = dict(np.load(f"{OUT}/tiny-sums-{k}.npz")) if k else None
    n, P, D = X.shape
    t0 = time.time()
    for seed in seeds:
        fold = folds(n, 5, seed)
        hits = {v: np.zeros(n, bool) for v in ("base", "nested")}
        log = []
        for f in range(5):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            Xt, tt = X[train], targets[train]
            mean, sd = _moments(Xt, np.arange(len(train)))
            sd = np.where(sd > 0, sd, 1.0)
            gt_, mt_ = tiny_gram(s, mean, sd) if s else (0.0, 0.0)
            inner = folds(len(train), 5, seed=0)
            members = [np.flatnonzero(inner == g) for g in range(5)]
            parts = [_gram(Xt, m, tt, mean, sd) for m in members]
            G, M = sum(q[0] for q in parts), sum(q[1] for q in parts)
            ws = WEIGHTS if s else (0.0,)
            oof = np.empty((len(ws), len(LAMS), len(train), P), np.float32)
            for m, (g, mo) in zip(members, parts):
                z = (Xt[m] - mean) / sd
                for a, w in enumerate(ws):
                    W = np.stack([_ridge(G - g + w * gt_, M - mo + w * mt_, lam) for lam in LAMS], 1)
                    oof[a][:, m] = np.moveaxis(z @ W[:-1] + W[-1], -1, 0)
            err = ((oof - tt[None, None]) ** 2).mean(axis=(2, 3))  # (w, lambda)
            # every w with its lambda by the inner CV's cell MSE; w = 0 is best_two_nets ("base")
            per_w = []
            for a, w in enumerate(ws):
                l = int(np.argmin(err[a]))
                wt = _ridge(G + w * gt_, M + w * mt_, LAMS[l])
                testc = ((X[test] - mean) / sd) @ wt[:-1] + wt[-1]
                bs = BoxSearch(); bs.fit([upmaps(oof[a, l])], [gt[i] for i in train])
                h = best_ious(bs.predict([upmaps(testc)]), [gt[i] for i in test]) >= 0.5
                per_w.append((h, bs.train_corloc))
                hits.setdefault(f"w={w:g}", np.zeros(n, bool))[test] = h
                log.append(dict(seed=seed, fold=f, w=w, lam=LAMS[l], mse=float(err[a, l]),
                                test_mse=float(((testc - targets[test]) ** 2).mean()),
                                fraction=bs.fraction, train_corloc=bs.train_corloc))
                print(log[-1], f"{time.time() - t0:.0f}s", flush=True)
            # nested: (w, lambda) by the inner cell MSE; nested_corloc: w by BoxSearch's CorLoc
            # on the training photos' inner out-of-fold maps (smallest w on ties)
            a_mse = int(np.unravel_index(np.argmin(err), err.shape)[0])
            a_cor = int(np.argmax([c for _, c in per_w]))
            hits["base"][test] = per_w[0][0]
            hits["nested"][test] = per_w[a_mse][0]
            hits.setdefault("nested_corloc", np.zeros(n, bool))[test] = per_w[a_cor][0]
            log.append(dict(seed=seed, fold=f, nested_w=ws[a_mse], nested_corloc_w=ws[a_cor]))
            print(log[-1], flush=True)
            print("mse grid (rows w, cols lambda)", np.round(err, 5).tolist(), flush=True)
        np.savez(f"{OUT}/hits-k{k}-s{seed}.npz", **hits)
        json.dump(log, open(f"{OUT}/log-k{k}-s{seed}.json", "w"), indent=1, default=float)
        print_results(f"k={k} seed={seed}", hits, lambda v: "base", small, several)

if __name__ == "__main__":
    if sys.argv[1] == "sums":
        tiny_sums(int(sys.argv[2]))
    else:
        cv(int(sys.argv[2]), [int(v) for v in sys.argv[3:]])
