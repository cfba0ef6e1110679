"""The box-protocol interface and the cross-validation every protocol is evaluated by.

Every protocol has the same two steps::

    protocol.fit(maps, gt_boxes)     # maps: {MapSpec: (N, H, W)}; gt_boxes: N arrays (K_n, 4)
    boxes = protocol.predict(maps)   # (N, 4)

All boxes live in the network input's pixels (``H x W``, the maps' resolution), in the
convention of :mod:`sensloc.localize.boxes`; the evaluation maps them to the photo's pixels.
Fitting chooses what the protocol leaves open (a threshold, regression weights, a mean box
size) and is cheap: the maps are computed once, elsewhere.
"""
import json

import numpy as np

from sensloc.localize.folds import folds


class Protocol:
    """Interface: ``map_specs``, ``fit``, ``predict``, ``params`` (JSON-able) and ``kind``.

    ``kind`` names the class in box-model files (:mod:`sensloc.localize.presets` maps it back).
    A protocol that reads no map (``map_specs == ()``, the baselines) cannot count its images
    from the maps, so its ``predict`` also takes ``count``, the number of images.
    """

    kind = "protocol"
    map_specs = ()

    def fit(self, maps, gt_boxes):
        return self

    def predict(self, maps):
        raise NotImplementedError

    def params(self):
        raise NotImplementedError

    def describe(self):
        return f"{self.kind}({json.dumps(self.params(), sort_keys=True)})"


def cross_validated_boxes(make_protocol, maps, gt_boxes, k=5, seed=0):
    """Boxes for every image from a protocol fitted on the other folds only.

    The folds are :func:`sensloc.localize.folds.folds` ``(N, k, seed)``.

    Parameters
    ----------
    make_protocol : callable
        Returns a fresh, unfitted protocol.
    maps : {MapSpec: (N, H, W)}
    gt_boxes : N arrays (K_n, 4), input pixels

    Returns
    -------
    boxes : (N, 4)
    fitted : list of the k fitted protocols
    """
    n = len(gt_boxes)
    fold = folds(n, k, seed)
    boxes = np.zeros((n, 4))
    fitted = []
    for f in range(k):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        protocol = make_protocol()
        protocol.fit({s: m[train] for s, m in maps.items()}, [gt_boxes[i] for i in train])
        test_maps = {s: m[test] for s, m in maps.items()}
        # A protocol without maps learns the image count from nowhere else.
        boxes[test] = (protocol.predict(test_maps) if protocol.map_specs
                       else protocol.predict(test_maps, count=len(test)))
        fitted.append(protocol)
    return boxes, fitted
