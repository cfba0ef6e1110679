"""Map kinds: which attribution method to run, with which options, reduced how.

A *map kind* (:class:`MapSpec`) says which attribution method to run, with which options, and
how to reduce its ``(C, H, W)`` attribution to a ``(H, W)`` heat map at the network's input
resolution. Box protocols (:mod:`sensloc.localize.protocols`) name the map kinds they read;
the evaluation computes each once and caches it (:mod:`sensloc.evaluation.map_cache`).
"""
import json
from dataclasses import dataclass, field

import numpy as np

from sensloc.saliency import methods, postprocess, registry

#: Methods a map kind may name, and the options each accepts.
METHOD_OPTIONS = {
    "gradient": (), "gradient_x_input": (), "guided": (), "deconvnet": (),
    "deeplift": ("reference", "max_pool"),
    "integrated_gradients": ("reference", "steps", "method"),
    "smoothgrad": ("samples", "sigma", "seed"),
    "grad_cam": ("layer",),
    "neuron_selection": ("layer", "k"),
    "occlusion": ("window", "stride", "baseline"),
    "activations": ("layer",),
    "class_contributions": (),
}
#: Map kinds that are per-cell features (N, C, h, w) at a layer's resolution, not heat maps
#: (N, H, W): read by :mod:`sensloc.localize.protocols.objectness`, never boxed or scored.
FEATURE_METHODS = frozenset({"activations", "class_contributions"})


@dataclass(frozen=True)
class MapSpec:
    """One kind of heat map.

    Parameters
    ----------
    method : str
        A key of :data:`METHOD_OPTIONS`: the :data:`saliency.METHODS` names, ``grad_cam``, and
        the :data:`FEATURE_METHODS` kept as cell features for
        :mod:`sensloc.localize.protocols.objectness`: ``activations``, a layer's output, and
        ``class_contributions``, the class score's terms by channel and cell
        (:func:`sensloc.saliency.class_contributions`).
    reduce : str
        Channel reduction (:func:`saliency.postprocess.reduce_channels`); ignored by
        ``grad_cam``, whose map is upsampled to the input size instead.
    options : tuple of (name, value) pairs
        Keyword arguments of the method, e.g. ``(("reference", "zero"),)``; give a dict to
        :meth:`make`.
    mirror : bool
        Explain the horizontally mirrored image and mirror the map back,
        ``m(x)[:, j] = M(x[:, ::-1])[:, W - 1 - j]``: the same photo seen through the other
        half of every asymmetric filter, so averaging the two views cancels part of the maps'
        noise (:func:`sensloc.localize.protocols.mix.view_average`). Features are mirrored
        back along their cells' columns.
    zoom : float
        Explain the preprocessed image resized bilinearly by ``zoom`` (``round(zoom H) x
        round(zoom W)``; only for fully convolutional networks, ``net.input_size is None``)
        and resize the map back to ``H x W``: an object spans ``zoom^2`` times more of the
        network's cells, so small objects get finer maps.
    net : str or None
        The architecture whose map this is, e.g. ``"mobilenet_v2"``; None (the default) is the
        evaluation's own network. The evaluation computes a named network's maps with that
        network (its preprocessing, input size and class numbering,
        :mod:`sensloc.evaluation.maps`), loaded from the installed weights. :meth:`compute`
        itself runs the network it is given.
    """
    method: str
    reduce: str = "max_abs"
    options: tuple = field(default=())
    mirror: bool = False
    zoom: float = 1.0
    net: str = None

    def __post_init__(self):
        if self.method not in METHOD_OPTIONS:
            raise ValueError(f"unknown map method {self.method!r}; known: {sorted(METHOD_OPTIONS)}")
        unknown = [k for k, _ in self.options if k not in METHOD_OPTIONS[self.method]]
        if unknown:
            raise ValueError(f"{self.method} takes options {METHOD_OPTIONS[self.method]}, "
                             f"not {unknown}")
        if self.reduce not in postprocess.CHANNEL_REDUCTIONS:
            raise ValueError(f"reduce must be one of {postprocess.CHANNEL_REDUCTIONS}")
        if not isinstance(self.mirror, bool):
            raise ValueError(f"mirror must be True or False, got {self.mirror!r}")
        if not (isinstance(self.zoom, (int, float)) and 0.25 <= self.zoom <= 4):
            raise ValueError(f"zoom must be a number in [0.25, 4], got {self.zoom!r}")
        if self.method == "activations" and not self.options:
            raise ValueError("activations take a layer: MapSpec.make('activations', layer=NAME)")
        if self.is_features and self.zoom != 1.0:
            raise ValueError(f"{self.method} are features on the network's cells: no zoom")
        if self.net is not None and not (isinstance(self.net, str) and self.net
                                         and self.net.replace("_", "").isalnum()):
            raise ValueError(f"net must be None or an architecture name such as 'mobilenet_v2', "
                             f"got {self.net!r}")

    @classmethod
    def make(cls, method, reduce="max_abs", mirror=False, zoom=1.0, net=None, **options):
        return cls(method, reduce, tuple(sorted(options.items())), bool(mirror), float(zoom), net)

    @property
    def is_features(self):
        """Whether :meth:`compute` gives cell features (N, C, h, w) rather than heat maps."""
        return self.method in FEATURE_METHODS

    @property
    def name(self):
        """A readable, unique, file-system-safe name, e.g. ``deeplift-reference=zero-sum`` or
        ``gradient-max_abs-mirror-zoom=1.5`` or ``activations-layer=block14-net=mobilenet_v2``
        (the view and the network are named only when they are not the image itself and the
        evaluation's network, so older caches keep their names)."""
        parts = [self.method] + [f"{k}={v}" for k, v in self.options]
        if self.method != "grad_cam" and not self.is_features:
            parts.append(self.reduce)
        if self.mirror:
            parts.append("mirror")
        if self.zoom != 1.0:
            parts.append(f"zoom={self.zoom:g}")
        if self.net is not None:
            parts.append(f"net={self.net}")
        return "-".join(parts).replace("/", "_")

    def to_json(self):
        d = {"method": self.method, "reduce": self.reduce, "options": dict(self.options),
             "mirror": self.mirror, "zoom": self.zoom}
        if self.net is not None:  # absent for the evaluation's network, as before it existed
            d["net"] = self.net
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        d = json.loads(text)  # box models written before views existed have neither key
        return cls.make(d["method"], d["reduce"], d.get("mirror", False), d.get("zoom", 1.0),
                        d.get("net"), **d["options"])

    def compute(self, net, x, targets, trace=None):
        """Heat maps (N, H, W) at the input resolution for a preprocessed batch (N, C, H, W);
        for ``activations``, the layer's output (N, C, h, w), the same for every target, and
        for ``class_contributions`` the target's (N, C, h, w).

        ``trace``, the forward pass of ``x`` run already, is used by the methods that start
        from it (:data:`~sensloc.saliency.registry.SHARES_FORWARD`) when the map reads ``x``
        itself (no zoom, no mirror); the maps are the same floats either way."""
        n, channels, height, width = x.shape
        if self.zoom != 1.0 or self.mirror or self.method not in registry.SHARES_FORWARD:
            trace = None  # another input, or a method of many passes
        if self.zoom != 1.0:
            if net.input_size is not None:
                raise ValueError(f"zoom={self.zoom:g} needs a fully convolutional network; "
                                 f"{net.name} takes only {net.input_size} inputs")
            size = (round(self.zoom * height), round(self.zoom * width))
            x = postprocess.upsample(x.reshape(n * channels, height, width), size)
            x = x.reshape(n, channels, *size)
        if self.mirror:
            x = np.ascontiguousarray(x[..., ::-1])
        options = dict(self.options)
        if self.is_features:  # not a heat map: (N, C, h, w) at the layer's cells
            if self.method == "activations":
                net.layer(options["layer"])  # a clear error for an unknown layer name
                features = methods.forward_of(net, x, trace).outputs[options["layer"]]
            else:
                features = methods.class_contributions(net, x, targets, trace)
            if self.mirror:
                features = features[..., ::-1]
            return np.ascontiguousarray(features, np.float32)
        if trace is not None:
            options["trace"] = trace
        if self.method == "grad_cam":
            heat = methods.grad_cam(net, x, targets, **options)
        else:
            attribution = registry.METHODS[self.method](net, x, targets, **options)
            heat = postprocess.reduce_channels(attribution, self.reduce)
        if self.mirror:
            heat = heat[..., ::-1]
        if heat.shape[1:] != (height, width):  # Grad-CAM's cells, or a zoomed view
            heat = postprocess.upsample(heat, (height, width))
        return np.ascontiguousarray(heat)
