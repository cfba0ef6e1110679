"""Prototype (issue 19, fifth round): check candidate boxes with the classifier itself.

Candidates per photo: BoxSearch's box (fitted on the training photos' out-of-fold maps, as the
library) and the union / largest-region boxes of the objectness map (Khan's recipe, sigma 4)
at fractions 0.2..0.9. Each candidate is cropped from the network's input, resized to 227 x 227
and classified by SqueezeNet: logp(B) = log-softmax of the known class. Rule: among the
candidates with logp(B) >= logp(base) - delta and area within [a_lo, 1] x area(base), take the
smallest; delta, a_lo chosen by training CorLoc (ties to keeping the base box).

    python crop.py SEED...
"""
import sys, time, pickle, os
sys.path.insert(0, "/work/loc76-runs"); sys.path.insert(0, "/work/main/docs/experiments/tiny")
import numpy as np
from boxstage import gt, upmaps, small, several, records
from sensloc import nets, weights
from sensloc.data import images
from sensloc.saliency import postprocess
from sensloc.saliency.methods import forward_of
from sensloc.localize.boxes import best_ious, boxes_at_fractions
from sensloc.localize.protocols.mix import BoxSearch, mixed_heat
from report import print_results

nets.configure_process(); nets.use_backend("numba")
net = weights.load(weights.resolve("squeezenet1_0"))
CLS = np.array([r.class_index for r in records])
FR = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CACHE = "/work/cw-runs/crop-logp.pkl"
logp_cache = pickle.load(open(CACHE, "rb")) if os.path.exists(CACHE) else {}
X = None


def inputs():
    global X
    if X is None:
        X = np.concatenate([images.load_batch([r.path for r in records[s:s + 32]], net.preprocessing)
                            for s in range(0, len(records), 32)]).astype(np.float32)
    return X


def key_box(b):
    x0, y0 = int(np.floor(b[0])), int(np.floor(b[1]))
    x1, y1 = int(np.ceil(b[2])), int(np.ceil(b[3]))
    x0, y0 = max(0, min(x0, 219)), max(0, min(y0, 219))
    return (x0, y0, max(x1, x0 + 8), max(y1, y0 + 8))


def logps(pairs):
    """pairs: [(photo, key box)] -> log p(class) of each crop."""
    todo = [p for p in dict.fromkeys(pairs) if p not in logp_cache]
    x = inputs()
    for s in range(0, len(todo), 32):
        chunk = todo[s:s + 32]
        batch = np.stack([postprocess.upsample(x[i][:, y0:y1, x0:x1], (227, 227))
                          for i, (x0, y0, x1, y1) in chunk]).astype(np.float32)
        z = np.asarray(forward_of(net, batch).outputs["pool_final"], np.float64)
        z = z - z.max(1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(1, keepdims=True))
        for (i, kb), row in zip(chunk, lp):
            logp_cache[(i, kb)] = float(row[CLS[i]])
    if todo:
        pickle.dump(logp_cache, open(CACHE, "wb"))
    return np.array([logp_cache[p] for p in pairs])


def candidates(cells, idx, bs):
    """(n, K, 4) boxes, K = 1 + 2 len(FR); column 0 = BoxSearch's box."""
    m = upmaps(cells)
    heat = mixed_heat([m], 4.0)
    parts = [bs.predict([m])[:, None]]
    for mode in ("union", "largest"):
        parts.append(boxes_at_fractions(heat, FR, mode).astype(np.float64))
    return np.concatenate(parts, axis=1)


def area(b):
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


DELTAS = (None, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
ALOS = (0.0, 0.1, 0.25, 0.5)


def choose(C, L, delta, alo):
    """index per photo: the smallest candidate with logp >= logp(base) - delta, area in
    [alo, 1] x area(base); delta None: the base."""
    if delta is None:
        return np.zeros(len(C), int)
    a = area(C); ok = (L >= L[:, :1] - delta) & (a <= a[:, :1] + 1e-9) & (a >= alo * a[:, :1])
    ok[:, 0] = True
    return np.argmin(np.where(ok, a, np.inf), axis=1)


def hits_of(C, idx, pick):
    return best_ious(C[np.arange(len(C)), pick], [gt[i] for i in idx]) >= 0.5


t0 = time.time()
for seed in [int(s) for s in sys.argv[1:]]:
    d = np.load(f"/work/loc76-runs/cells-base-s{seed}.npz"); fold = d["fold"]; n = len(gt)
    hits = {k: np.zeros(n, bool) for k in ("base", "chosen", "oracle")}
    for f in range(5):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        bs = BoxSearch(modes=("union", "largest")).fit([upmaps(d[f"oof{f}"])], [gt[i] for i in tr])
        Ctr, Cte = candidates(d[f"oof{f}"], tr, bs), candidates(d[f"test{f}"], te, bs)
        Ltr = logps([(i, key_box(b)) for i, row in zip(tr, Ctr) for b in row]).reshape(Ctr.shape[:2])
        Lte = logps([(i, key_box(b)) for i, row in zip(te, Cte) for b in row]).reshape(Cte.shape[:2])
        best = None
        for delta in DELTAS:
            for alo in ALOS:
                acc = hits_of(Ctr, tr, choose(Ctr, Ltr, delta, alo)).mean()
                if best is None or acc > best[0] + 1e-12:
                    best = (acc, delta, alo)
        hits["base"][te] = hits_of(Cte, te, np.zeros(len(te), int))
        hits["chosen"][te] = hits_of(Cte, te, choose(Cte, Lte, best[1], best[2]))
        ious = np.stack([best_ious(Cte[:, k], [gt[i] for i in te]) for k in range(Cte.shape[1])], 1)
        hits["oracle"][te] = (ious >= 0.5).any(1)
        print(seed, f, "chose", best, "base train", hits_of(Ctr, tr, np.zeros(len(tr), int)).mean(),
              f"test {hits['base'][te].mean():.3f} -> {hits['chosen'][te].mean():.3f}",
              f"{time.time()-t0:.0f}s", flush=True)
    np.savez(f"/work/cw-runs/crop-hits-s{seed}.npz", **hits)
    print_results(f"seed={seed}", hits, lambda v: "base", small, several)
