"""Box protocols: from heat maps to one box per image, fitted on a training set.

Every protocol has the same two steps (:mod:`~sensloc.localize.protocols.base`)::

    protocol.fit(maps, gt_boxes)     # maps: {MapSpec: (N, H, W)}; gt_boxes: N arrays (K_n, 4)
    boxes = protocol.predict(maps)   # (N, 4)

and both go through ``protocol.reduce(maps)``, image by image, so that a dataset can be
reduced in batches (``fit_reduced``, ``predict_reduced``; see the base module).

One module per family; they import :mod:`~sensloc.localize.protocols.base` and each other
downwards only, never this package or :mod:`sensloc.localize.presets` (which names them):

:mod:`~sensloc.localize.protocols.threshold`
    :class:`ThresholdBoxes`: threshold one map at a fraction of its maximum, box the largest
    8-connected component or the union of hot pixels (Simonyan et al.); :class:`KhanBoxes`:
    Khan et al.'s recipe (:func:`khan_heat`) on two maps, mixed, then boxed.
:mod:`~sensloc.localize.protocols.regression`
    :class:`RegressionBoxes`: Ebrahimpour & Noelle's closed-form least-squares map from
    grid-averaged maps to box corners.
:mod:`~sensloc.localize.protocols.baselines`
    :class:`CenterBox`, :class:`WholeImage`: the training set's mean box size centred in the
    image, and the whole image.
:mod:`~sensloc.localize.protocols.mix`
    :class:`MixBoxes`: the geometric mean of several maps through Khan's recipe, union box,
    with a nested grid search (:class:`BoxSearch`).
:mod:`~sensloc.localize.protocols.objectness`
    :class:`ObjectnessBoxes`: a cell-wise ridge regression to an objectness map, boxed by the
    mix's :class:`BoxSearch`.
"""
from sensloc.localize.protocols.base import Protocol, cross_validated_boxes
from sensloc.localize.protocols.baselines import CenterBox, WholeImage
from sensloc.localize.protocols.mix import BoxSearch, MixBoxes
from sensloc.localize.protocols.objectness import ObjectnessBoxes
from sensloc.localize.protocols.regression import LAMBDAS, RegressionBoxes
from sensloc.localize.protocols.threshold import FRACTIONS, KhanBoxes, ThresholdBoxes, khan_heat

__all__ = ["FRACTIONS", "LAMBDAS", "BoxSearch", "CenterBox", "KhanBoxes", "MixBoxes",
           "ObjectnessBoxes", "Protocol", "RegressionBoxes", "ThresholdBoxes", "WholeImage",
           "cross_validated_boxes", "khan_heat"]
