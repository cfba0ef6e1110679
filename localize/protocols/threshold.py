"""Threshold protocols: one map, or Khan et al.'s mix of two, cut at a fraction of its maximum.

``ThresholdBoxes`` (Simonyan et al.'s protocol) keeps the pixels ``m >= fraction * max m`` and
boxes them: all of them (the union box) or the largest 8-connected component. ``KhanBoxes``
first puts two maps through Khan et al.'s recipe (:func:`khan_heat`) and mixes them. The
fraction is tuned on the training images (the best CorLoc over :data:`FRACTIONS`) unless fixed.
"""
import numpy as np

from sensloc.saliency import postprocess
from sensloc.saliency.maps import MapSpec

from sensloc.localize.boxes import boxes_at_fractions, pixel_boxes
from sensloc.localize.metrics import corloc
from sensloc.localize.protocols.base import Protocol

#: Threshold fractions tried when tuning (fractions of each map's maximum).
FRACTIONS = tuple(float(f) for f in np.round(np.arange(0.02, 0.81, 0.02), 2))


def khan_heat(heat, positive=True, sigma=4.0, border_width=0.1, border_weight=0.5):
    """Khan et al.'s recipe for one map, (N, H, W) -> (N, H, W) float32.

    ``m <- max(m, 0)`` (if ``positive``), ``m <- m / max m``, Gaussian smoothing by ``sigma``
    pixels, ``m <- m / max m``, values below the map's own mean set to 0, then multiplied by a
    border mask rising linearly from ``border_weight`` at the edge to 1 at ``border_width`` of
    the side (``border_width=0``: no mask). The maps are float32 (the memory of many smoothed
    maps); :class:`KhanBoxes` and :class:`sensloc.localize.protocols.mix.MixBoxes` both use it.
    """
    m = np.asarray(heat, np.float32)
    m = postprocess.positive_part(m) if positive else m
    m = postprocess.normalize(postprocess.gaussian_smooth(postprocess.normalize(m), sigma))
    m = postprocess.zero_below_mean(m)
    return postprocess.apply_border_mask(m, border_width, border_weight)


class ThresholdBoxes(Protocol):
    """Box the pixels above ``fraction * max`` of one map.

    Parameters
    ----------
    spec : MapSpec
    mode : {"union", "largest"}
    fraction : float, optional
        Fixed threshold; ``None`` tunes it on the training set over :data:`FRACTIONS`
        (the best CorLoc, the smallest fraction among ties).
    """

    kind = "threshold"

    def __init__(self, spec, mode="union", fraction=None):
        self.spec, self.mode, self.fraction = spec, mode, fraction
        self.map_specs = (spec,)
        self.scores = None

    def heat(self, maps):
        return maps[self.spec]

    def fractions(self):
        """The fractions a reduction boxes at: the search grid, or the fixed fraction."""
        return FRACTIONS if self.fraction is None else (self.fraction,)

    def reduce(self, maps):
        """``candidates`` (N, F, 4): each image's box at every fraction of :meth:`fractions`
        (whole pixels, int16: :func:`~sensloc.localize.boxes.pixel_boxes`)."""
        heat = self.heat(maps)
        return {"candidates": pixel_boxes(boxes_at_fractions(heat, self.fractions(), self.mode))}

    def fit_reduced(self, reduced, gt_boxes):
        if self.fraction is None:
            self.scores = corloc(reduced["candidates"], gt_boxes)  # (F,): CorLoc per fraction
            self.fraction = float(FRACTIONS[int(np.argmax(self.scores))])
        return self

    def predict_reduced(self, reduced):
        if self.fraction is None:
            raise ValueError(f"{self.describe()} has no threshold: fit it or give fraction=")
        candidates = reduced["candidates"]
        if candidates.shape[1] == 1:  # reduced by a protocol with this one fraction
            return candidates[:, 0].astype(np.float64)
        if candidates.shape[1] != len(FRACTIONS) or self.fraction not in FRACTIONS:
            raise ValueError(f"these candidates were not boxed at the fraction {self.fraction}")
        return candidates[:, FRACTIONS.index(self.fraction)].astype(np.float64)

    def params(self):
        return {"spec": self.spec.to_json(), "mode": self.mode, "fraction": self.fraction}

    @classmethod
    def from_params(cls, p):
        return cls(MapSpec.from_json(p["spec"]), p["mode"], p["fraction"])


class KhanBoxes(ThresholdBoxes):
    """Khan et al.: two maps through :func:`khan_heat`, mixed, then thresholded and boxed.

    Parameters
    ----------
    spec_a, spec_b : MapSpec
        E.g. DeepLIFT (channel sum, positive part taken here) and guided backprop
        (max of absolute values over channels).
    mix : {"geometric_mean", "product", "weighted_sum"}
    sigma, border_width, border_weight : see :func:`khan_heat`
    mode, fraction : see :class:`ThresholdBoxes`
    """

    kind = "khan"

    def __init__(self, spec_a, spec_b, mix="geometric_mean", sigma=4.0, border_width=0.1,
                 border_weight=0.5, mode="union", fraction=None):
        super().__init__(spec_a, mode, fraction)
        self.spec_b, self.mix = spec_b, mix
        self.sigma, self.border_width, self.border_weight = sigma, border_width, border_weight
        self.map_specs = (spec_a, spec_b)

    def heat(self, maps):
        a, b = (khan_heat(maps[s], True, self.sigma, self.border_width, self.border_weight)
                for s in self.map_specs)
        return postprocess.mix(a, b, self.mix)

    def params(self):
        return {"spec_a": self.spec.to_json(), "spec_b": self.spec_b.to_json(), "mix": self.mix,
                "sigma": self.sigma, "border_width": self.border_width,
                "border_weight": self.border_weight, "mode": self.mode, "fraction": self.fraction}

    @classmethod
    def from_params(cls, p):
        return cls(MapSpec.from_json(p["spec_a"]), MapSpec.from_json(p["spec_b"]), p["mix"],
                   p["sigma"], p["border_width"], p["border_weight"], p["mode"], p["fraction"])
