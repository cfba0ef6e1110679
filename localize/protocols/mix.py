"""The ``mix`` box protocol: several saliency maps, Khan et al.'s recipe, one nested grid search.

Every factor map ``m_k`` goes through Khan et al.'s recipe without the border mask
(:func:`sensloc.localize.protocols.threshold.khan_heat` with ``border_width=0``: positive part,
normalized, Gaussian-smoothed by ``sigma``, normalized, cut below its mean); the maps are mixed
by their geometric mean, which is hot only where *every* method agrees, and the mix is damped
near the border by Khan's mask ``b`` (weight 0.5 at the edge rising to 1 at ``border_width`` of
the side)::

    M = b * (m_1 m_2 ... m_K)^(1/K)

The union of the pixels ``M >= fraction * max M`` is boxed (Simonyan et al.'s union box,
:func:`sensloc.localize.boxes.union_boxes`; or, where the search is given that ``mode`` too,
the box of their largest 8-connected component), and that box is finally scaled about its
centre by ``scale``. :class:`BoxSearch` chooses ``(sigma, border_width, fraction, scale)``
(and the mode, if offered several) jointly by CorLoc on the training images it is given, so in
:func:`sensloc.localize.protocols.base.cross_validated_boxes` the search is nested inside each
training fold and never sees the test fold. :class:`MixBoxes` is that search on a set of
saliency maps; :class:`sensloc.localize.protocols.objectness.ObjectnessBoxes` runs the same
search on its learned objectness map.

Why these maps and this recipe, what else was measured and did not help, and the numbers:
docs/experiments/mix.md.
"""
import numpy as np

from sensloc.saliency import postprocess
from sensloc.saliency.maps import MapSpec

from sensloc.localize.boxes import BOX_MODES, boxes_at_fractions, pixel_boxes
from sensloc.localize.metrics import corloc
from sensloc.localize.protocols.base import Protocol
from sensloc.localize.protocols.threshold import FRACTIONS, khan_heat

#: Smoothing widths (pixels of the input) tried by :meth:`BoxSearch.fit`.
SIGMAS = (2.0, 4.0, 6.0)
#: Widths of the border band (fractions of each side) tried by :meth:`BoxSearch.fit`.
BORDER_WIDTHS = (0.1, 0.2)
#: Box scale factors (about the box centre) tried by :meth:`BoxSearch.fit`.
SCALES = (0.9, 0.95, 1.0, 1.05, 1.1)
#: Images processed at a time (bounds the memory of the smoothed float maps).
CHUNK = 64


def view_average(views):
    """One map from several views of the same method, (N, H, W): ``mean_v m_v^+ / max m_v^+``.

    Each view (the image, its mirror, a zoomed copy: :class:`sensloc.saliency.maps.MapSpec`'s
    ``mirror`` and ``zoom``) is made positive and divided by its own maximum first, because a
    zoomed view's gradients have another scale; a view with no positive value counts as zero.
    Evidence that only one of ``V`` views shows (noise, an asymmetric stray blob) is divided
    by ``V``, evidence that all show is kept.

    Parameters
    ----------
    views : sequence of V arrays (N, H, W)

    Returns
    -------
    (N, H, W) float32 array in [0, 1]
    """
    views = [np.asarray(v) for v in views]
    if not views:
        raise ValueError("view_average needs at least one view")
    if any(v.shape != views[0].shape or v.ndim != 3 for v in views):
        raise ValueError("the views must share one (N, H, W) shape; got "
                         f"{[v.shape for v in views]}")
    total = np.zeros(views[0].shape, np.float32)
    for v in views:
        total += postprocess.normalize(postprocess.positive_part(np.asarray(v, np.float32)))
    return total / len(views)


def mixed_heat(maps, sigma, border_width=0.0, border_weight=0.5):
    """Khan's recipe on every map, geometric mean over the maps, border mask.

    Parameters
    ----------
    maps : sequence of K arrays (N, H, W)
        One raw heat map per method (any sign; the positive part is taken).
    sigma : float
        Gaussian smoothing in pixels (:func:`sensloc.localize.protocols.threshold.khan_heat`).
    border_width, border_weight : float
        The border mask (:func:`saliency.postprocess.border_mask`), applied once to the mix;
        the same mask on every map would give the same result, since
        ``prod (b m_k)^(1/K) = b prod m_k^(1/K)``.

    Returns
    -------
    (N, H, W) float32 array, non-negative
    """
    maps = [np.asarray(m) for m in maps]
    if not maps:
        raise ValueError("mixed_heat needs at least one map")
    n = len(maps[0])
    if any(m.shape != maps[0].shape or m.ndim != 3 for m in maps):
        raise ValueError(f"the maps must share one (N, H, W) shape; got {[m.shape for m in maps]}")
    out = np.empty(maps[0].shape, np.float32)
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        mix = np.ones(maps[0][part].shape, np.float64)
        for m in maps:
            mix *= khan_heat(m[part], True, sigma, border_width=0.0)
        out[part] = mix ** (1.0 / len(maps))
    return postprocess.apply_border_mask(out, border_width, border_weight)


def scale_about_centre(boxes, scale, size_wh):
    """Boxes ``(..., 4)`` scaled by ``scale`` about their centres, clipped to the image
    (``size_wh`` (2,), or one ``(width, height)`` per box, broadcast against ``(..., 2)``)."""
    boxes = np.asarray(boxes, np.float64)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = (boxes[..., 2:] - boxes[..., :2]) / 2 * scale
    size_wh = np.asarray(size_wh, np.float64)
    limit = np.concatenate([size_wh, size_wh], axis=-1)
    return np.clip(np.concatenate([centre - half, centre + half], axis=-1), 0, limit)


class BoxSearch:
    """The mix's box stage on given factor maps, its parameters chosen by CorLoc.

    Parameters
    ----------
    sigmas, border_widths, fractions, scales : sequences of float
        The grid :meth:`fit` searches.
    border_weight : float
        The border mask's weight at the edge (Khan et al.'s 0.5, fixed).
    sigma, border_width, fraction, scale : float, optional
        The chosen values; all given (and ``mode``) means fitted (``fit`` chooses again).
    threshold : float
        IoU needed for a hit when scoring the grid (0.5, CorLoc's).
    train_corloc : float, optional
        The training CorLoc of the chosen values (set by :meth:`fit`).
    modes : sequence of str
        How the box is cut from the hot pixels (:func:`~sensloc.localize.boxes.box_from_mask`):
        ``"union"``, all of them; ``"largest"``, their largest 8-connected component. Several:
        chosen with the rest, the first preferred among equal scores.
    mode : str, optional
        The chosen mode; implied when ``modes`` has one.

    Notes
    -----
    ``fit`` scores every ``(sigma, border_width, fraction, scale, mode)`` by CorLoc on the
    images it is given and keeps the best; among equal scores it prefers the first mode, the
    scale nearest 1, then the sigma nearest 4, the narrower border and the smallest fraction
    (the order of :meth:`grid`), so that ties never depend on anything but the training data.
    """

    def __init__(self, sigmas=SIGMAS, border_widths=BORDER_WIDTHS, fractions=FRACTIONS,
                 scales=SCALES, border_weight=0.5, sigma=None, border_width=None, fraction=None,
                 scale=None, threshold=0.5, train_corloc=None, modes=("union",), mode=None):
        self.sigmas = tuple(float(s) for s in sigmas)
        self.border_widths = tuple(float(b) for b in border_widths)
        self.fractions = tuple(float(f) for f in fractions)
        self.scales = tuple(float(s) for s in scales)
        self.modes = tuple(modes)
        if not (self.sigmas and self.border_widths and self.fractions and self.scales
                and self.modes):
            raise ValueError("every grid of the box search needs at least one value")
        if not set(self.modes) <= set(BOX_MODES) or len(set(self.modes)) < len(self.modes):
            raise ValueError(f"modes must be distinct names among {sorted(BOX_MODES)}; got "
                             f"{self.modes}")
        self.border_weight, self.threshold = float(border_weight), float(threshold)
        self.sigma, self.border_width = sigma, border_width
        self.fraction, self.scale = fraction, scale
        self.train_corloc = train_corloc
        self.mode = self.modes[0] if mode is None and len(self.modes) == 1 else mode
        if self.mode is not None and self.mode not in self.modes:
            raise ValueError(f"mode {self.mode!r} is not among the modes {self.modes}")

    @property
    def fitted(self):
        return None not in (self.sigma, self.border_width, self.fraction, self.scale, self.mode)

    def grid(self):
        """The (sigma, border_width, scale, mode) settings in preference order (ties go first)."""
        sigmas = sorted(self.sigmas, key=lambda s: (abs(s - 4.0), s))
        scales = sorted(self.scales, key=lambda s: (abs(s - 1.0), s))
        return [(s, b, c, m) for m in self.modes for c in scales for s in sigmas
                for b in sorted(self.border_widths)]

    def _axes(self):
        """The (sigmas, border widths, fractions, modes) a reduction boxes at: the grid, or
        the fit."""
        if self.fitted:
            return (self.sigma,), (self.border_width,), (self.fraction,), (self.mode,)
        return self.sigmas, self.border_widths, self.fractions, self.modes

    def reduce(self, raw):
        """What the search needs of each image's factor maps ``raw`` (K arrays (N, H, W)): for
        each mode of :meth:`_axes`, ``{mode}`` (N, S, B, F, 4), its box at every sigma, border
        width and fraction (before scaling; whole pixels, int16:
        :func:`~sensloc.localize.boxes.pixel_boxes`), and ``size_wh`` (N, 2), the maps' size."""
        sigmas, widths, fractions, modes = self._axes()
        n, h, w = np.shape(raw[0])
        boxes = {m: np.empty((n, len(sigmas), len(widths), len(fractions), 4)) for m in modes}
        for i, sigma in enumerate(sigmas):
            mix = mixed_heat(raw, sigma)  # the border mask multiplies the mix: apply it after
            for j, width in enumerate(widths):
                heat = postprocess.apply_border_mask(mix, width, self.border_weight)
                for m in modes:
                    boxes[m][:, i, j] = boxes_at_fractions(heat, fractions, m)
        return {**{m: pixel_boxes(b) for m, b in boxes.items()},
                "size_wh": np.tile(np.array([w, h], np.float64), (n, 1))}

    def scores(self, raw, gt_boxes):
        """Training CorLoc of every grid point: {(sigma, border_width, scale, mode): (F,)
        array}, for the factor maps ``raw``, a list of K arrays (N, H, W)."""
        return self.scores_reduced(self.reduce(raw), gt_boxes)

    def scores_reduced(self, reduced, gt_boxes):
        """:meth:`scores` from the reduction of an unfitted search (:meth:`reduce`)."""
        size = reduced["size_wh"]
        if len(gt_boxes) != len(size):
            raise ValueError(f"{len(size)} images' maps but ground truth for {len(gt_boxes)}")
        grid = (len(self.sigmas), len(self.border_widths), len(self.fractions))
        if any(m not in reduced or reduced[m].shape[1:4] != grid for m in self.modes):
            raise ValueError("these boxes were not reduced over this search's grid")
        table = {}
        for mode in self.modes:
            for i, sigma in enumerate(self.sigmas):
                for j, width in enumerate(self.border_widths):
                    for scale in self.scales:
                        table[(sigma, width, scale, mode)] = corloc(
                            scale_about_centre(reduced[mode][:, i, j], scale, size[:, None]),
                            gt_boxes, self.threshold)
        return table

    def unfit(self):
        """Forget the chosen values, so that :meth:`reduce` spans the whole grid again."""
        self.sigma = self.border_width = self.fraction = self.scale = None
        if len(self.modes) > 1:
            self.mode = None
        return self

    def fit(self, raw, gt_boxes):
        """Choose the parameters on the factor maps ``raw`` (K arrays (N, H, W))."""
        return self.fit_reduced(self.unfit().reduce(raw), gt_boxes)

    def fit_reduced(self, reduced, gt_boxes):
        """:meth:`fit` from the reduction of an unfitted search (:meth:`reduce`)."""
        table = self.scores_reduced(reduced, gt_boxes)
        best, choice = -1.0, None
        for sigma, width, scale, mode in self.grid():
            found = table[(sigma, width, scale, mode)]
            j = int(np.argmax(found))  # the smallest fraction among ties
            if found[j] > best:
                best, choice = float(found[j]), (sigma, width, self.fractions[j], scale, mode)
        self.sigma, self.border_width, self.fraction, self.scale, self.mode = choice
        self.train_corloc = best
        return self

    def heat(self, raw):
        """The fitted mix ``M`` of the factor maps, (N, H, W)."""
        if not self.fitted:
            raise ValueError("the box search is not fitted: call fit or give all its parameters")
        return mixed_heat(raw, self.sigma, self.border_width, self.border_weight)

    def predict(self, raw):
        """Boxes (N, 4) in input pixels for the factor maps ``raw``."""
        if not self.fitted:
            raise ValueError("the box search is not fitted: call fit or give all its parameters")
        return self.predict_reduced(self.reduce(raw))

    def predict_reduced(self, reduced):
        """:meth:`predict` from a reduction by this search, fitted or not (:meth:`reduce`)."""
        if not self.fitted:
            raise ValueError("the box search is not fitted: call fit or give all its parameters")
        boxes = reduced[self.mode]
        index = [0 if boxes.shape[1 + a] == 1 else grid.index(value) for a, (grid, value) in
                 enumerate(((self.sigmas, self.sigma), (self.border_widths, self.border_width),
                            (self.fractions, self.fraction)))]
        return scale_about_centre(boxes[:, index[0], index[1], index[2]], self.scale,
                                  reduced["size_wh"])

    def params(self):
        return {"sigmas": list(self.sigmas), "border_widths": list(self.border_widths),
                "fractions": list(self.fractions), "scales": list(self.scales),
                "border_weight": self.border_weight, "threshold": self.threshold,
                "sigma": self.sigma, "border_width": self.border_width,
                "fraction": self.fraction, "scale": self.scale,
                "train_corloc": self.train_corloc, "modes": list(self.modes), "mode": self.mode}

    @classmethod
    def from_params(cls, p):
        return cls(p["sigmas"], p["border_widths"], p["fractions"], p["scales"],
                   p["border_weight"], p["sigma"], p["border_width"], p["fraction"], p["scale"],
                   p["threshold"], p.get("train_corloc"), p.get("modes", ("union",)),
                   p.get("mode"))  # box models written before modes existed: the union box


class MixBoxes(Protocol):
    """Geometric mean of several maps through Khan's recipe, union box, scaled; all tuned.

    Parameters
    ----------
    specs : sequence of MapSpec, or of tuples of MapSpec
        The factors of the geometric mean (the ``mix`` preset's four maps:
        :func:`sensloc.localize.presets.mix_specs`); a tuple is one factor, the
        :func:`view_average` of its maps (views of one method: mirrored, zoomed).
    sigmas, border_widths, ..., train_corloc, modes
        The :class:`BoxSearch` (``self.search``).
    """

    kind = "mix"  # box models written before this class had its name say "best"

    def __init__(self, specs, sigmas=SIGMAS, border_widths=BORDER_WIDTHS, fractions=FRACTIONS,
                 scales=SCALES, border_weight=0.5, sigma=None, border_width=None, fraction=None,
                 scale=None, threshold=0.5, train_corloc=None, modes=("union",)):
        self.factors = tuple((f,) if isinstance(f, MapSpec) else tuple(f) for f in specs)
        if not self.factors or not all(self.factors):
            raise ValueError("MixBoxes needs at least one map kind, and every factor one map")
        if not all(isinstance(s, MapSpec) for f in self.factors for s in f):
            raise ValueError("the factors of MixBoxes must be MapSpecs or tuples of MapSpecs")
        self.map_specs = tuple(dict.fromkeys(s for f in self.factors for s in f))
        self.search = BoxSearch(sigmas, border_widths, fractions, scales, border_weight, sigma,
                                border_width, fraction, scale, threshold, train_corloc, modes)

    @property
    def fitted(self):
        return self.search.fitted

    def _maps(self, maps):
        missing = [s.name for s in self.map_specs if s not in maps]
        if missing:
            raise KeyError(f"{self.kind} needs the maps {missing}")
        return [maps[f[0]] if len(f) == 1 else view_average([maps[s] for s in f])
                for f in self.factors]

    def scores(self, maps, gt_boxes):
        """Training CorLoc of every grid point (:meth:`BoxSearch.scores`)."""
        return self.search.scores(self._maps(maps), gt_boxes)

    def reduce(self, maps):
        """The search's reduction of the factor maps (:meth:`BoxSearch.reduce`)."""
        return self.search.reduce(self._maps(maps))

    def fit_reduced(self, reduced, gt_boxes):
        self.search.fit_reduced(reduced, gt_boxes)
        return self

    def heat(self, maps):
        """The fitted mix of the maps, (N, H, W)."""
        return self.search.heat(self._maps(maps))

    def predict_reduced(self, reduced):
        return self.search.predict_reduced(reduced)

    def params(self):
        return {"specs": [[s.to_json() for s in f] for f in self.factors],
                **self.search.params()}

    @classmethod
    def from_params(cls, p):
        # Box models written before factors existed list one JSON string per factor.
        factors = [[f] if isinstance(f, str) else f for f in p["specs"]]
        protocol = cls([tuple(MapSpec.from_json(s) for s in f) for f in factors])
        protocol.search = BoxSearch.from_params(p)
        return protocol
