"""Learning curve: cross-validated CorLoc against the number of training photos, extrapolated.

    python benchmarks/learning_curve.py [--presets ebrahimpour best] [--sizes 50,100,200,300,400]
        [--draws 3] [--seeds 0,1,2] [--extra DATA --extra-sizes 500,1000] [--json FILE]
        [--figure PNG]
    python benchmarks/learning_curve.py --from-json FILE --figure PNG     # fit and draw again

Ebrahimpour & Noelle trained their box regression on 225,000 photos and report 82.76% CorLoc;
the development photos (``imagenet-val-227`` + ``imagenet-val-full`` in the shared data, 692
photos, SqueezeNet 1.0, class known) give ~554 training photos per fold. This script measures
how CorLoc grows with the training set and what a fitted curve says at 225,000 photos.

For every fold seed and every fold of the README's 5-fold CV
(:func:`sensloc.localize.protocols.base.cross_validated_reduced`'s folds), each of ``draws``
seeded permutations of the training fold gives nested subsets, its first ``n`` photos for every
size ``n`` (:func:`nested_subsets`); a fresh protocol is fitted on a subset alone (its lambda,
threshold and box search chosen inside those ``n`` photos) and predicts the held-out fold.
Every size scores each of the 692 photos once per (seed, draw): ``hits`` of shape
(sizes, seeds * draws, 692). Photos of another data set (``--extra``, e.g. ``tiny-imagenet-val``)
can join the whole training fold as extra training photos, never as test photos.

Two 95% intervals per size, because two things vary:

* over test photos (the bars of the figure): :func:`sensloc.localize.metrics.bootstrap_ci` of
  each run's 692 hits, its bounds averaged over the runs. Which 692 photos were drawn from
  ImageNet is the larger uncertainty (+-3.5 points) and it is shared by every size: it moves
  the whole curve up or down together.
* over draws: the 2.5-97.5% quantiles of the runs' CorLoc (which training photos and fold
  split), the noise of a single point about the curve.

The curve (:func:`fit_power_law`) is ``CorLoc(n) = a - b n^(-c)``, the learning-curve form of
Cortes et al. (1994) and Hestness et al. (2017): the error falls as a power of the training set
towards a floor, so CorLoc levels off at ``a`` (it cannot pass 100%). It is fitted by unweighted
least squares to the points of the development photos (every size has the same test photos and
runs). Its uncertainty comes from refitting to paired bootstrap resamples of the test photos
(:func:`bootstrap_fits`), which keeps the correlation between the sizes. ``CorLoc = alpha +
beta log10 n`` (:func:`fit_log_linear`, no floor) is given beside it: the two differ little
inside the one decade measured and a lot at 225,000 photos, which is what an extrapolation over
2.6 more decades can and cannot say.
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

ROOT = Path(__file__).resolve().parents[1]
#: Ebrahimpour & Noelle's training set and CorLoc.
PAPER_PHOTOS, PAPER_CORLOC = 225_000, 0.8276
#: Exponents ``c`` of the power law searched (a grid, then a bounded 1-D refinement).
C_RANGE = (1e-3, 3.0)


# --------------------------------------------------------------------------- subsets

def nested_subsets(train, sizes, draws, seed):
    """Nested random subsets of a training fold, ``subsets[d][j]`` the first ``sizes[j]`` photos
    of draw ``d``'s permutation of ``train``.

    The permutation is ``numpy.random.default_rng([seed, d]).permutation(train)``, so a draw is
    the same whatever the sizes asked, and its subsets are nested: ``n1 < n2`` implies
    ``subsets[d][n1] ⊂ subsets[d][n2]``. A size of ``len(train)`` or more gives the whole fold.

    Parameters
    ----------
    train : (M,) int array, the training fold's photo indices
    sizes : sequence of int
    draws : int
    seed : int or sequence of int (e.g. ``[fold seed, fold]``)

    Returns
    -------
    list of ``draws`` lists of ``len(sizes)`` int arrays
    """
    train = np.asarray(train)
    out = []
    for d in range(draws):
        order = np.random.default_rng(np.append(np.atleast_1d(seed), d)).permutation(train)
        out.append([order[:min(int(n), len(order))] for n in sizes])
    return out


# --------------------------------------------------------------------------- measuring

def photo_hits(input_boxes, records, preprocessing):
    """``hit_n`` (N,) of boxes (N, 4) in network-input pixels, scored like ``sensloc evaluate``:
    mapped back to each photo's pixels, IoU >= 0.5 with one of its ground-truth boxes
    (:func:`sensloc.localize.metrics.hits`)."""
    from sensloc.localize.metrics import hits
    boxes = np.array([preprocessing.input_to_photo(b, (r.width, r.height))[0]
                      for r, b in zip(records, input_boxes)])
    return hits(boxes, [r.boxes for r in records])


def curve_hits(make_protocol, reduced, gt_input, records, preprocessing, sizes, draws, k, seed,
               extra=None, extra_sizes=()):
    """Hits of every photo, held out, by protocols fitted on subsets of its training fold.

    Parameters
    ----------
    make_protocol : callable returning a fresh, unfitted protocol
    reduced : {name: (N, ...) array}, the protocol's reduction of the N photos
    gt_input : N arrays (K_n, 4), ground truth in input pixels (what protocols fit on)
    records, preprocessing : the photos (for scoring in photo pixels) and the network's
    sizes : S sizes; a size >= the fold's training photos means the whole fold
    draws : int, nested draws per fold (:func:`nested_subsets`)
    k, seed : the folds, :func:`sensloc.localize.folds.folds` ``(N, k, seed)``
    extra : optional ``(reduced, gt_input)`` of E extra training photos
    extra_sizes : E' sizes of extra photos added to the whole training fold (nested draws)

    Returns
    -------
    hits : (S + E', draws, N) bool array
    train_sizes : (S + E',) float array, the mean number of training photos over the folds
    """
    from sensloc.localize.folds import folds
    from sensloc.localize.protocols.base import concatenate, take
    n = len(gt_input)
    fold = folds(n, k, seed)
    rows = len(sizes) + len(extra_sizes)
    hits = np.zeros((rows, draws, n), bool)
    counts = np.zeros((rows, k))
    for f in range(k):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)

        def held_out_hits(subset, more=()):
            """Fit on photos ``subset`` (+ extra photos ``more``), score the held-out fold."""
            data, truth = take(reduced, subset), [gt_input[i] for i in subset]
            if len(more):
                data = concatenate([data, take(extra[0], more)])
                truth = truth + [extra[1][i] for i in more]
            boxes = make_protocol().fit_reduced(data, truth).predict_reduced(take(reduced, test))
            return photo_hits(boxes, [records[i] for i in test], preprocessing)

        whole = held_out_hits(train)  # the same subset in every draw: fitted once
        subsets = nested_subsets(train, sizes, draws, [seed, f])
        extras = nested_subsets(np.arange(len(extra[1])) if extra else [], extra_sizes, draws,
                                [seed, f, 1])
        for d in range(draws):
            for j, subset in enumerate(subsets[d]):
                hits[j, d, test] = whole if len(subset) == len(train) else held_out_hits(subset)
                counts[j, f] = len(subset)
            for j, more in enumerate(extras[d], start=len(sizes)):
                hits[j, d, test] = held_out_hits(train, more)
                counts[j, f] = len(train) + len(more)
    return hits, counts.mean(axis=1)


def summarize_points(hits):
    """Per size: CorLoc (mean over runs and photos), the test-photo and the draw intervals.

    Parameters
    ----------
    hits : (S, R, N) bool array, R runs (fold seeds x draws) of N held-out photos

    Returns
    -------
    corloc : (S,) ; photo_ci, draw_ci : (S, 2) (see the module docstring)
    """
    from sensloc.localize.metrics import bootstrap_ci
    runs = hits.mean(axis=2)  # (S, R)
    photo_ci = np.array([np.mean([bootstrap_ci(h) for h in size], axis=0) for size in hits])
    draw_ci = np.quantile(runs, [0.025, 0.975], axis=1).T
    return runs.mean(axis=1), photo_ci, draw_ci


# --------------------------------------------------------------------------- curves

def _linear_part(x, y):
    """Least-squares ``(a, b)`` of ``y ≈ a - b x`` and the residual sum of squares."""
    design = np.column_stack([np.ones_like(x), -x])
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return a, b, float(np.sum((y - a + b * x) ** 2))


def fit_power_law(n, y):
    """Least-squares ``y ≈ a - b n^(-c)``: the parameters and the residual sum of squares.

    For a fixed ``c`` the model is linear in ``(a, b)``, solved exactly (:func:`_linear_part`);
    the residual as a function of ``c`` alone is minimized over :data:`C_RANGE`, first on a
    log-spaced grid (the global minimum's neighbourhood), then by a bounded 1-D search between
    the grid's neighbours (variable projection: no starting point to guess).

    Parameters
    ----------
    n : (P,) training-set sizes; y : (P,) CorLoc at those sizes

    Returns
    -------
    dict with ``a``, ``b``, ``c`` (floats), ``rss`` and ``at_bound`` (``c`` on a bound of
    :data:`C_RANGE`: the data do not pin it)
    """
    n, y = np.asarray(n, np.float64), np.asarray(y, np.float64)
    grid = np.geomspace(*C_RANGE, 400)
    # The grid's residuals at once: a straight-line fit of y on x leaves
    # sum (y - ybar)^2 - (sum (x - xbar)(y - ybar))^2 / sum (x - xbar)^2.
    x = n[None, :] ** -grid[:, None]  # (G, P)
    x = x - x.mean(axis=1, keepdims=True)
    dy = y - y.mean()
    rss = dy @ dy - (x @ dy) ** 2 / np.maximum(np.sum(x * x, axis=1), np.finfo(float).tiny)
    i = int(np.argmin(rss))
    low, high = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = minimize_scalar(lambda c: _linear_part(n ** -c, y)[2], bounds=(low, high),
                           method="bounded", options={"xatol": 1e-12})
    c = float(best.x) if best.fun <= rss[i] else float(grid[i])
    a, b, residual = _linear_part(n ** -c, y)
    at_bound = c <= grid[1] or c >= grid[-2]
    return {"a": float(a), "b": float(b), "c": c, "rss": residual, "at_bound": bool(at_bound)}


def power_law(params, n):
    """``a - b n^(-c)`` at sizes ``n``."""
    return params["a"] - params["b"] * np.asarray(n, np.float64) ** -params["c"]


def fit_log_linear(n, y):
    """Least-squares ``y ≈ alpha + beta log10 n``: ``{"alpha", "beta", "rss"}``."""
    x = np.log10(np.asarray(n, np.float64))
    beta, alpha = np.polyfit(x, y, 1)
    return {"alpha": float(alpha), "beta": float(beta),
            "rss": float(np.sum((y - alpha - beta * x) ** 2))}


def log_linear(params, n):
    """``alpha + beta log10 n`` at sizes ``n``."""
    return params["alpha"] + params["beta"] * np.log10(np.asarray(n, np.float64))


def bootstrap_fits(photo_means, n, resamples=2000, seed=0, at=PAPER_PHOTOS):
    """Both curves refitted to paired bootstrap resamples of the test photos.

    Each resample draws N photo indices with replacement, the same for every size (a photo hard
    at one size is hard at all), averages ``photo_means`` over them to P points and refits.

    Parameters
    ----------
    photo_means : (P, N) array, each photo's hit rate over the runs at each size
    n : (P,) sizes

    Returns
    -------
    dict of (resamples,) arrays: ``a``, ``b``, ``c``, ``power_at`` (the power law at ``at``),
    ``alpha``, ``beta``, ``log_at``
    """
    rng = np.random.default_rng(seed)
    keys = ("a", "b", "c", "power_at", "alpha", "beta", "log_at")
    out = {key: np.empty(resamples) for key in keys}
    for r in range(resamples):
        y = photo_means[:, rng.integers(0, photo_means.shape[1], photo_means.shape[1])].mean(axis=1)
        power, log = fit_power_law(n, y), fit_log_linear(n, y)
        for key in ("a", "b", "c"):
            out[key][r] = power[key]
        out["alpha"][r], out["beta"][r] = log["alpha"], log["beta"]
        out["power_at"][r], out["log_at"][r] = power_law(power, at), log_linear(log, at)
    return out


def fit_report(n, corloc, photo_means, resamples=2000):
    """Both fits to the points and their 95% bootstrap intervals (2.5-97.5% quantiles)."""
    power, log = fit_power_law(n, corloc), fit_log_linear(n, corloc)
    boot = bootstrap_fits(photo_means, n, resamples)
    ci = {key: [float(v) for v in np.quantile(values, [0.025, 0.975])]
          for key, values in boot.items()}
    return {"power": power, "log": log, "ci": ci, "boot": {k: v.tolist() for k, v in boot.items()},
            "power_at": float(power_law(power, PAPER_PHOTOS)),
            "log_at": float(log_linear(log, PAPER_PHOTOS))}


# --------------------------------------------------------------------------- the figure

def draw(results, path):
    """Points with their test-photo interval bars (draw range as thick bars), both fitted curves
    out to 225,000 photos (the power law with its 95% bootstrap band and its interval at
    225,000), and 82.76% dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 5.6))
    xs = np.geomspace(30, 4e5, 300)
    for (name, r), colour in zip(results.items(), ["tab:blue", "tab:orange", "tab:green"]):
        n, y = np.array(r["train_sizes"]), 100 * np.array(r["corloc"])
        photo, spread = 100 * np.array(r["photo_ci"]), 100 * np.array(r["draw_ci"])
        own = np.array(r["same_domain"])
        other = f"{name}, whole fold + {r.get('extra') or 'extra'} photos (other domain)"
        for mask, marker, label in [(own, "o", name), (~own, "s", other)]:
            if mask.any():
                bars = [y[mask] - photo[mask, 0], photo[mask, 1] - y[mask]]
                ax.errorbar(n[mask], y[mask], yerr=bars,
                            fmt=marker, color=colour, capsize=3, label=label,
                            mfc=colour if marker == "o" else "white")
                ax.vlines(n[mask], spread[mask, 0], spread[mask, 1], color=colour, lw=4, alpha=0.5)
        if "fit" not in r:
            continue
        fit = r["fit"]
        ax.plot(xs, 100 * power_law(fit["power"], xs), color=colour, lw=1.5,
                label=f"{name}: a - b n^-c, a = {100 * fit['power']['a']:.1f}%, "
                      f"c = {fit['power']['c']:.2f}")
        curves = [power_law(dict(a=a, b=b, c=c), xs)
                  for a, b, c in zip(*(fit["boot"][k] for k in "abc"))]
        ax.fill_between(xs, *(100 * np.quantile(curves, [0.025, 0.975], axis=0)), color=colour,
                        alpha=0.12, lw=0)
        ax.plot(xs, 100 * log_linear(fit["log"], xs), color=colour, lw=1, ls=":")
        low, high = fit["ci"]["power_at"]
        ax.errorbar([PAPER_PHOTOS], [100 * fit["power_at"]],
                    yerr=[[100 * (fit["power_at"] - low)], [100 * (high - fit["power_at"])]],
                    fmt="D", color=colour, capsize=4)
    ax.axhline(100 * PAPER_CORLOC, color="k", ls="--", lw=1,
               label=f"Ebrahimpour & Noelle: {100 * PAPER_CORLOC:.2f}% at 225k photos")
    ax.axvline(PAPER_PHOTOS, color="grey", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("training photos (dotted: linear in log n)")
    ax.set_ylabel("CorLoc, 5-fold CV, % (692 development photos)")
    ax.set_title("SqueezeNet 1.0, class known: bars 95% over test photos, thick over draws",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# --------------------------------------------------------------------------- command

def measure(args):
    """Hits of every preset, size, seed and draw on the development photos: the results dict."""
    from sensloc import weights as weight_files
    from sensloc.data import datasets
    from sensloc.evaluation.maps import Dataset, ensure_maps
    from sensloc.evaluation.reductions import reduce_dataset
    from sensloc.evaluation.runner import photo_to_input
    from sensloc.localize.presets import preset
    weight_path = weight_files.resolve(args.net)
    net = weight_files.load(weight_path)
    prep = net.preprocessing
    records = [r for d in args.data for r in datasets.read_manifest(Path(d))]
    gt = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in records]
    sizes = [int(s) for s in args.sizes.split(",") if s] + [len(records)]  # last: the whole fold
    extra_sizes = [int(s) for s in args.extra_sizes.split(",")] if args.extra else []
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    for name in args.presets:
        protocols = {name: preset(name, net.name)}
        dataset = Dataset(records)
        ensure_maps(weight_path, net, dataset, protocols[name].map_specs, args.cache, args.jobs,
                    progress=False, reducers=tuple(protocols.values()))
        # In memory (no spill folder): the best preset's cell features take ~0.5 GB.
        reduced = reduce_dataset(net, dataset, protocols, args.cache)[0][name]
        extra = None
        if extra_sizes:
            more = datasets.read_manifest(Path(args.extra))[:max(extra_sizes)]
            more_set = Dataset(more)
            ensure_maps(weight_path, net, more_set, protocols[name].map_specs, args.cache,
                        args.jobs, progress=True, reducers=tuple(protocols.values()))
            extra = (reduce_dataset(net, more_set, protocols, args.cache)[0][name],
                     [photo_to_input(r.boxes, (r.width, r.height), prep) for r in more])
        per_seed = []
        for seed in seeds:
            hits, train_sizes = curve_hits(lambda: preset(name, net.name), reduced, gt, records,
                                           prep, sizes, args.draws, args.k, seed, extra,
                                           extra_sizes)
            per_seed.append(hits)
            print(f"{name} seed {seed}: " + ", ".join(
                f"{t:.0f}: {100 * h.mean():.1f}%" for t, h in zip(train_sizes, hits)), flush=True)
        hits = np.concatenate(per_seed, axis=1)  # (S, seeds * draws, N)
        corloc, photo_ci, draw_ci = summarize_points(hits)
        results[name] = {"train_sizes": train_sizes.tolist(), "corloc": corloc.tolist(),
                         "photo_ci": photo_ci.tolist(), "draw_ci": draw_ci.tolist(),
                         "same_domain": [True] * len(sizes) + [False] * len(extra_sizes),
                         "runs": hits.shape[1], "photo_means": hits.mean(axis=1).tolist(),
                         "extra": Path(args.extra).name if args.extra else None}
    return results


ROW_KEYS = ("train_sizes", "corloc", "photo_ci", "draw_ci", "same_domain", "photo_means")


def merge(results, more):
    """Add the presets of ``more`` (results of another run) to ``results``; of a preset already
    there, only the rows with extra photos are added (its own curve is kept)."""
    for name, r in more.items():
        if name not in results:
            results[name] = r
            continue
        extra = [j for j, same in enumerate(r["same_domain"]) if not same]
        for key in ROW_KEYS:
            results[name][key] = results[name][key] + [r[key][j] for j in extra]
        results[name]["extra"] = r.get("extra")


def report(results, resamples):
    """Fit the curves (to the development photos' points only) and print the table."""
    for name, r in results.items():
        own = np.array(r["same_domain"])
        n = np.array(r["train_sizes"])[own]
        if len(n) >= 4:  # three parameters: at least one point more
            r["fit"] = fit_report(n, np.array(r["corloc"])[own], np.array(r["photo_means"])[own],
                                  resamples)
        print(f"\n{name} ({r['runs']} runs per size)\n| training photos | CorLoc | 95% over test "
              "photos | 95% over draws |\n|---:|---:|---|---|")
        for t, c, p, d, same in zip(r["train_sizes"], r["corloc"], r["photo_ci"], r["draw_ci"],
                                    r["same_domain"]):
            print(f"| {t:.0f}{'' if same else ' (extra)'} | {100 * c:.1f}% | {100 * p[0]:.1f}-"
                  f"{100 * p[1]:.1f}% | {100 * d[0]:.1f}-{100 * d[1]:.1f}% |")
        if "fit" not in r:
            continue
        f, ci = r["fit"], r["fit"]["ci"]
        p = f["power"]
        print(f"power law: a = {100 * p['a']:.1f}% [{100 * ci['a'][0]:.1f}, "
              f"{100 * ci['a'][1]:.1f}], "
              f"b = {p['b']:.3g} [{ci['b'][0]:.3g}, {ci['b'][1]:.3g}], c = {p['c']:.3g} "
              f"[{ci['c'][0]:.3g}, {ci['c'][1]:.3g}]{' (c at a bound)' if p['at_bound'] else ''}; "
              f"at 225k: {100 * f['power_at']:.1f}% [{100 * ci['power_at'][0]:.1f}, "
              f"{100 * ci['power_at'][1]:.1f}]")
        g = f["log"]
        print(f"log-linear: alpha = {100 * g['alpha']:.1f}%, beta = {100 * g['beta']:.2f} points "
              f"per decade [{100 * ci['beta'][0]:.2f}, {100 * ci['beta'][1]:.2f}]; at 225k: "
              f"{100 * f['log_at']:.1f}% [{100 * ci['log_at'][0]:.1f}, {100 * ci['log_at'][1]:.1f}]"
              f"; rss power {p['rss']:.2e}, log {g['rss']:.2e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = Path(os.environ.get("SENSLOC_SHARED", ROOT.parent / "shared"))
    parser.add_argument("--data", nargs="+", default=[str(shared / "data" / "imagenet-val-227"),
                                                      str(shared / "data" / "imagenet-val-full")])
    parser.add_argument("--presets", nargs="+", default=["ebrahimpour", "best"])
    parser.add_argument("--sizes", default="50,100,200,300,400",
                        help="training subset sizes; the whole training fold is always added")
    parser.add_argument("--draws", type=int, default=3, help="nested subset draws per fold")
    parser.add_argument("--seeds", default="0,1,2", help="fold seeds (the README's three)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--extra", help="a manifest folder of extra training photos (never test)")
    parser.add_argument("--extra-sizes", default="", help="extra photos added to the whole fold")
    parser.add_argument("--net", default="squeezenet1_0")
    parser.add_argument("--cache", help="map cache (default: $SENSLOC_CACHE_DIR/maps)")
    parser.add_argument("--jobs", type=int, default=1, help="processes for missing maps")
    parser.add_argument("--resamples", type=int, default=2000,
                        help="bootstrap resamples of the fit")
    parser.add_argument("--json", help="write the measured points (and the fits) here")
    parser.add_argument("--from-json", nargs="+",
                        help="read the points from earlier --json files instead (merged)")
    parser.add_argument("--figure", help="PNG of the curve (e.g. docs/figures/learning_curve.png)")
    args = parser.parse_args(argv)
    if args.cache is None:
        from sensloc import weights
        args.cache = str(weights.default_cache_dir() / "maps")
    if args.from_json:
        results = {}
        for path in args.from_json:
            merge(results, json.loads(Path(path).read_text()))
    else:
        results = measure(args)
    if args.json and not args.from_json:
        Path(args.json).write_text(json.dumps(results))
    report(results, args.resamples)
    if args.figure:
        draw(results, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
