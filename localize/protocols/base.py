"""The box-protocol interface and the cross-validation every protocol is evaluated by.

Every protocol has the same two steps::

    protocol.fit(maps, gt_boxes)     # maps: {MapSpec: (N, H, W)}; gt_boxes: N arrays (K_n, 4)
    boxes = protocol.predict(maps)   # (N, 4)

All boxes live in the network input's pixels (``H x W``, the maps' resolution), in the
convention of :mod:`sensloc.localize.boxes`; the evaluation maps them to the photo's pixels.
Fitting chooses what the protocol leaves open (a threshold, regression weights, a mean box
size) and is cheap: the maps are computed once, elsewhere.

Each step goes through a *reduction*: ``protocol.reduce(maps)`` keeps, per image, only what
fitting and prediction read (the candidate boxes of every threshold a search may choose, a
regression's grid features), and ``fit`` and ``predict`` are ``fit_reduced(reduce(maps), ...)``
and ``predict_reduced(reduce(maps))``. A reduction is computed image by image, so a dataset can
be reduced in batches and the batches concatenated (:func:`concatenate`): the result is the
same as reducing all maps at once, and memory holds a batch of maps, never a dataset's
(:mod:`sensloc.evaluation.reductions` evaluates ImageNet that way). An unfitted protocol reduces for
its whole search; any fresh protocol of the same settings can then be fitted on the result.
"""
import concurrent.futures
import json

import numpy as np
import threadpoolctl

from sensloc.localize.folds import folds


class Protocol:
    """Interface: ``map_specs``, ``reduce``, ``fit_reduced``, ``predict_reduced``, ``params``
    (JSON-able) and ``kind``; ``fit`` and ``predict`` on maps follow from them.

    ``kind`` names the class in box-model files (:mod:`sensloc.localize.presets` maps it back).
    A protocol that reads no map (``map_specs == ()``, the baselines) reduces images to
    nothing, so its ``predict_reduced`` also takes ``count``, the number of images.
    """

    kind = "protocol"
    map_specs = ()
    #: Whether it learns from photos that only train (``use_extra_training``, see
    #: :class:`~sensloc.localize.protocols.objectness.ObjectnessBoxes`).
    takes_extra_training = False

    def reduce(self, maps):
        """What fitting and prediction need of each image: ``{name: (N, ...) array}``."""
        return {}

    def fit_reduced(self, reduced, gt_boxes):
        return self

    def predict_reduced(self, reduced):
        raise NotImplementedError

    def fit(self, maps, gt_boxes):
        return self.fit_reduced(self.reduce(maps), gt_boxes)

    def predict(self, maps):
        return self.predict_reduced(self.reduce(maps))

    def use_networks(self, networks):
        """Told which networks' maps it reads, ``{architecture: weights SHA-256}``; a protocol
        that records them (:class:`~sensloc.localize.protocols.objectness.ObjectnessBoxes`)
        refuses others once fitted. Returns itself."""
        return self

    def params(self):
        raise NotImplementedError

    def reduction_params(self):
        """The part of :meth:`params` that its reduction depends on (the key of cached
        reductions, :func:`sensloc.evaluation.map_cache.reduction_key`): all of them, unless a
        protocol knows better."""
        return self.params()

    def describe(self):
        return f"{self.kind}({json.dumps(self.params(), sort_keys=True)})"


def concatenate(parts):
    """Reductions of consecutive batches of images -> the reduction of all of them."""
    parts = list(parts)
    if not parts:
        raise ValueError("nothing to concatenate: no batch was reduced")
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def take(reduced, indices):
    """The rows ``indices`` of every array of a reduction; rows kept on disk (anything with a
    ``subset`` method, e.g. :class:`sensloc.evaluation.row_files.RowFile`) stay there."""
    return {name: values.subset(indices) if hasattr(values, "subset") else values[indices]
            for name, values in reduced.items()}


def put_rows(into, part, rows, count, store=None):
    """Write one batch's reduction into the dataset's, ``into[name][rows] = part[name]``, in place.

    Where :func:`concatenate` joins batches that all fit in memory, this writes each batch
    into arrays of the whole dataset as it comes, in any order of images.

    * The first batch holding a name allocates its rows: ``store(values)`` if that returns a
      row store (e.g. :class:`sensloc.evaluation.row_files.RowFile`, for rows too large to keep
      in memory), else an array ``(count,) + values.shape[1:]`` of the batch's dtype.
    * A later batch whose values that dtype cannot hold (boxes that are not whole pixels after
      whole-pixel int16 ones: :func:`sensloc.localize.boxes.pixel_boxes`) widens the array to
      the type of both. A row store cannot widen; it takes batches in order (``append``).

    Parameters
    ----------
    into : {name: (count, ...) array or row store}
        The reduction of the dataset so far (an empty dict before the first batch).
    part : {name: (B, ...) array}
        The reduction of the batch's B images.
    rows : slice or (B,) int array
        The batch's images among the ``count``; a row store needs the slice that follows
        the rows it holds.
    count : int
        Images in the dataset.
    store : callable, optional
        ``store(values)`` -> a row store for the name whose first batch is ``values``, or
        ``None`` to keep that name in memory.
    """
    for name, values in part.items():
        if name not in into:  # the first batch tells each row's shape and type
            rows_store = None if store is None else store(values)
            into[name] = (np.empty((count,) + values.shape[1:], values.dtype)
                          if rows_store is None else rows_store)
        target = into[name]
        if hasattr(target, "append"):
            if not (isinstance(rows, slice) and rows.start == len(target)):
                raise ValueError("a row store takes the batches in order, each after the last")
            if not np.can_cast(values.dtype, target.dtype):
                raise ValueError(f"rows of {values.dtype} do not fit a row store of {target.dtype}")
            target.append(values)
            continue
        if not np.can_cast(values.dtype, target.dtype):
            target = into[name] = target.astype(np.result_type(target, values))
        target[rows] = values


def cross_validated_boxes(make_protocol, maps, gt_boxes, k=5, seed=0):
    """Boxes for every image from a protocol fitted on the other folds only.

    :func:`cross_validated_reduced` of the maps' reduction by a fresh protocol.

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
    reduced = make_protocol().reduce(maps)
    return cross_validated_reduced(make_protocol, reduced, gt_boxes, k, seed)


def cross_validated_reduced(make_protocol, reduced, gt_boxes, k=5, seed=0, threads=1):
    """Boxes for every image from a protocol fitted on the other folds only, from a reduction.

    The folds are :func:`sensloc.localize.folds.folds` ``(N, k, seed)``.

    Parameters
    ----------
    make_protocol : callable
        Returns a fresh, unfitted protocol.
    reduced : {name: (N, ...) array}
        ``make_protocol().reduce(maps)`` of all N images (in batches or at once).
    gt_boxes : N arrays (K_n, 4), input pixels
    threads : int
        Fit the folds on this many threads, BLAS on one thread in each (the folds are
        independent; NumPy, SciPy and BLAS release the GIL in the heavy steps). The boxes are
        the same floats as on one thread: every fold's work is what it was, only interleaved.

    Returns
    -------
    boxes : (N, 4)
    fitted : list of the k fitted protocols
    """
    n = len(gt_boxes)
    fold = folds(n, k, seed)

    def fit_fold(f):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        protocol = make_protocol()
        protocol.fit_reduced(take(reduced, train), [gt_boxes[i] for i in train])
        # A protocol without maps learns the image count from nowhere else.
        return protocol, (protocol.predict_reduced(take(reduced, test)) if protocol.map_specs
                          else protocol.predict_reduced({}, count=len(test)))

    if threads > 1:
        with threadpoolctl.threadpool_limits(1, user_api="blas"), \
                concurrent.futures.ThreadPoolExecutor(min(threads, k)) as pool:
            results = list(pool.map(fit_fold, range(k)))
    else:
        results = [fit_fold(f) for f in range(k)]
    boxes = np.zeros((n, 4))
    for f, (_, predicted) in enumerate(results):
        boxes[fold == f] = predicted
    return boxes, [protocol for protocol, _ in results]
