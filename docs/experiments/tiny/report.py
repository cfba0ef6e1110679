"""The RESULT lines of the round-3 prototypes: CorLoc with its bootstrap interval, the small and
several-object photos, and the paired difference against a baseline with its interval."""
import numpy as np

from sensloc.localize.metrics import bootstrap_ci


def print_results(label, hits, baseline_of, small, several):
    """One line per variant of ``hits`` ({name: (n,) bool}); ``baseline_of(name)`` names the
    variant it is paired with."""
    rng = np.random.default_rng(0)
    for v, h in hits.items():
        n = len(h)
        lo, hi = bootstrap_ci(h)
        d = h.astype(float) - hits[baseline_of(v)]
        b = [d[rng.integers(0, n, n)].mean() for _ in range(10000)]
        print(f"RESULT {label} {v}: {100*h.mean():.1f}% ({100*lo:.1f}-{100*hi:.1f}) "
              f"<10% {h[small].sum()}/{small.sum()} several {100*h[several].mean():.1f}% "
              f"({h[several].sum()}/{several.sum()}) diff {100*d.mean():+.1f} "
              f"[{100*np.percentile(b, 2.5):+.1f}, {100*np.percentile(b, 97.5):+.1f}]", flush=True)
