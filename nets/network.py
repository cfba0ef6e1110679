"""A network: named layers in order, a forward pass that keeps a trace, a backward pass that reads it."""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Trace:
    """What one forward pass remembers.

    Attributes
    ----------
    input : (N, C, H, W) array
        The batch the pass started from.
    caches : dict
        ``{layer name: cache}`` in forward order, for the layers' backward passes.
    outputs : dict
        ``{layer name: output}``: every top-level layer's activation (Grad-CAM and neuron
        selection read them).
    """
    input: np.ndarray
    caches: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    @property
    def output(self):
        """The last layer's output: the logits, (N, num_classes), for a whole pass."""
        return next(reversed(self.outputs.values()))


def softmax(logits):
    """Row-wise ``exp(z_j) / sum_k exp(z_k)`` of (N, K) logits, computed without overflow."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Network:
    """Layers applied in order; any architecture in this package is one of these.

    Parameters
    ----------
    name : str
        Architecture name, e.g. ``"vgg16"``.
    layers : list of Layer
        Top-level layers with unique names.
    in_channels : int
    input_size : (int, int) or None
        The (H, W) that the network requires (networks with fully connected heads), or
        ``None`` when any size works (fully convolutional networks); ``default_input_size``
        is then the size it was trained at.
    default_input_size : (int, int)
    num_classes : int

    feature_layer : str, optional
        The last spatial layer before the classifier, which Grad-CAM, neuron selection and the
        localization presets read by default (:func:`sensloc.saliency.layers.feature_layer`).
    class_offset : int, optional
        The output index of ImageNet class 0: 1 for TensorFlow's MobileNets, whose output 0 is
        "background", 0 otherwise. Datasets number classes as ImageNet does (0-999); the
        output of class ``c`` is ``c + class_offset`` (:meth:`dataset_classes` goes back).

    Attributes ``preprocessing``, ``class_names`` and ``source`` (the weight file's path,
    name, SHA-256 and history) are None until ``weights.load`` fills them in.
    """

    def __init__(self, name, layers, in_channels, input_size, default_input_size, num_classes,
                 feature_layer=None, class_offset=0):
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        if feature_layer is not None and feature_layer not in names:
            raise ValueError(f"feature layer {feature_layer!r} is not a layer of {name}")
        self.name = name
        self.layers = list(layers)
        self.in_channels = in_channels
        self.input_size = None if input_size is None else tuple(input_size)
        self.default_input_size = tuple(default_input_size)
        self.num_classes = num_classes
        self.feature_layer = feature_layer
        self.class_offset = class_offset
        # What the weight file says (weights.load sets them; None for a bare network).
        self.preprocessing = None
        self.class_names = None
        self.source = None

    def __repr__(self):
        return f"Network({self.name!r}, {len(self.layers)} layers, {self.num_classes} classes)"

    def dataset_classes(self, outputs):
        """Output indices (int or array) -> dataset classes: ``outputs - class_offset``, and -1
        for an output that no dataset class has (MobileNetV2's "background")."""
        outputs = np.asarray(outputs)
        return np.where(outputs >= self.class_offset, outputs - self.class_offset, -1)

    @property
    def layer_names(self):
        return [layer.name for layer in self.layers]

    def layer(self, name):
        """The top-level layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.name} has no layer {name!r}; layers are {self.layer_names}")

    def _index(self, name):
        self.layer(name)  # raises the helpful KeyError
        return self.layer_names.index(name)

    @property
    def dtype(self):
        return next(iter(self.parameters().values()))["weight"].dtype

    # ------------------------------------------------------------------ parameters

    def parameters(self):
        """``{qualified layer name: {"weight": array, "bias": array}}`` in network order."""
        params = {}
        for layer in self.layers:
            params.update(layer.parameters())
        return params

    def parameter_shapes(self):
        """``{qualified layer name: {"weight": shape, "bias": shape}}``."""
        return {name: {k: v.shape for k, v in p.items()} for name, p in self.parameters().items()}

    def load_parameters(self, params):
        """Copy arrays into the layers after checking names, shapes and values.

        Parameters
        ----------
        params : dict
            ``{qualified layer name: {"weight": array, "bias": array}}``, every layer present.

        Raises
        ------
        ValueError
            Naming the first missing or unexpected layer, or the first array whose shape
            differs from the architecture's, or that holds NaN or infinity.
        """
        own = self.parameters()
        missing = [name for name in own if name not in params]
        unexpected = [name for name in params if name not in own]
        if missing or unexpected:
            raise ValueError(f"parameters do not fit {self.name}: missing layers {missing[:5]}, "
                             f"unexpected layers {unexpected[:5]}")
        for name, arrays in own.items():
            for key, target in arrays.items():
                if key not in params[name]:
                    raise ValueError(f"{self.name}: layer {name!r} has no {key!r} array")
                value = np.asarray(params[name][key])
                if value.shape != target.shape:
                    raise ValueError(f"{self.name}: {name}/{key} should have shape {target.shape}, "
                                     f"got {value.shape}")
                if not np.isfinite(value).all():
                    raise ValueError(f"{self.name}: {name}/{key} contains NaN or infinity")
        for name, arrays in own.items():
            for key, target in arrays.items():
                target[...] = params[name][key]
        return self

    def astype(self, dtype):
        """Convert every parameter to ``dtype`` in place (float64 for finite-difference checks)."""
        for layer in self._all_layers():
            for attr in ("weight", "bias"):
                if hasattr(layer, attr):
                    setattr(layer, attr, getattr(layer, attr).astype(dtype))
        return self

    def _all_layers(self):
        stack = list(self.layers)
        while stack:
            layer = stack.pop()
            yield layer
            stack.extend(v for v in vars(layer).values() if hasattr(v, "forward"))

    # ------------------------------------------------------------------ passes

    def check_input(self, x):
        """Refuse anything but a finite (N, C, H, W) batch of this network's dtype and size."""
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.name} expects a NumPy array, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.name} expects a batch of shape (N, {self.in_channels}, H, W), "
                             f"got {x.shape}")
        if self.input_size is not None and x.shape[2:] != self.input_size:
            raise ValueError(f"{self.name} expects {self.input_size[0]}x{self.input_size[1]} inputs, "
                             f"got {x.shape[2]}x{x.shape[3]}")
        if x.dtype != self.dtype:
            raise TypeError(f"{self.name} has {self.dtype} parameters; the input is {x.dtype}")
        if not np.isfinite(x).all():
            raise ValueError(f"the input to {self.name} contains NaN or infinity")

    def forward(self, x, stop=None):
        """Run the layers in order, keeping what the backward pass needs.

        Parameters
        ----------
        x : (N, C, H, W) float array
            A preprocessed batch.
        stop : str, optional
            Stop after this layer (its output is then ``trace.output``).

        Returns
        -------
        Trace
        """
        self.check_input(x)
        trace = Trace(input=x)
        out = np.ascontiguousarray(x)
        for layer in self.layers:
            out, trace.caches[layer.name] = layer.forward(out)
            trace.outputs[layer.name] = out
            if layer.name == stop:
                break
        return trace

    def __call__(self, x):
        """Logits (N, num_classes) of a preprocessed batch."""
        return self.forward(x).output

    def backward(self, trace, signal, rule=None, ref_trace=None, start=None, stop=None):
        """Send a signal from the output of layer ``start`` back to the input (or to ``stop``).

        Each layer applies its linear part ``sum_k w_ki s_k``; ReLU and max pooling ask the
        ``rule`` what to do (the plain gradient when ``rule`` is None), see :mod:`nets.layers`.

        Parameters
        ----------
        trace : Trace
            From :meth:`forward` on the batch being explained.
        signal : array
            The signal at the output of ``start`` (the last layer by default), the shape of
            that output, e.g. (N, num_classes) one-hot rows for a class score's gradient.
        rule : object, optional
            The nonlinearity rule (see :mod:`nets.layers`); None is the gradient.
        ref_trace : Trace, optional
            The forward trace of the reference batch, for reference-based rules (DeepLIFT).
        start, stop : str, optional
            Layer names: begin at ``start``'s output; end at ``stop``'s output instead of the
            network input.

        Returns
        -------
        array
            The signal at the network input (N, C, H, W), or at ``stop``'s output.
        """
        names = self.layer_names
        first = len(names) - 1 if start is None else self._index(start)
        last = 0 if stop is None else self._index(stop) + 1
        if start is not None and stop is not None and last > first + 1:
            raise ValueError(f"stop layer {stop!r} comes after start layer {start!r}")
        if names[first] not in trace.caches:
            raise ValueError(f"the trace stops before layer {names[first]!r}")
        expected = trace.outputs[names[first]].shape
        if signal.shape != expected:
            raise ValueError(f"the signal at {names[first]!r} should have shape {expected}, "
                             f"got {signal.shape}")
        for layer in reversed(self.layers[last:first + 1]):
            ref = None if ref_trace is None else ref_trace.caches[layer.name]
            signal = layer.backward(signal, trace.caches[layer.name], rule, ref)
        return signal

    def backward_parameters(self, trace, signal):
        """Gradients of every parameter, for training: plain backpropagation of ``signal``.

        The same recursion as :meth:`backward` with the gradient rule; at each layer with
        parameters, the signal arriving at its output also gives ``dL/dw`` and ``dL/db``
        (:meth:`nets.Conv2d.backward_parameters`, :meth:`nets.Linear.backward_parameters`).

        Parameters
        ----------
        trace : Trace
            From :meth:`forward` over the whole network.
        signal : (N, num_classes) array
            ``dL/d logits`` of the loss being minimized (e.g. from
            :func:`nets.training.softmax_cross_entropy`).

        Returns
        -------
        dict
            ``{qualified layer name: {"weight": array, "bias": array}}``, the layout of
            :meth:`parameters`.

        Raises
        ------
        TypeError
            For a network with composite layers (SqueezeNet's fire modules): training is for
            plain layer sequences.
        """
        composite = [layer.name for layer in self.layers
                     if layer.parameters() and not hasattr(layer, "backward_parameters")]
        if composite:
            raise TypeError(f"{self.name}: cannot train composite layers {composite}; "
                            "backward_parameters supports sequences of Conv2d/Linear/ReLU/pooling")
        last = self.layer_names[-1]
        if last not in trace.caches or signal.shape != trace.output.shape:
            raise ValueError(f"backward_parameters needs a full forward trace and a signal of "
                             f"the logits' shape {trace.output.shape}, got {signal.shape}")
        grads = {}
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            cache = trace.caches[layer.name]
            if layer.parameters():
                grads[layer.name] = layer.backward_parameters(signal, cache)
            if index > 0:  # the signal at the image itself is not needed
                signal = layer.backward(signal, cache)
        return dict(reversed(grads.items()))
