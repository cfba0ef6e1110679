"""Read MobileNetV2 1.0 224 from a quantized TensorFlow Lite file (``.tflite``).

A ``.tflite`` file is a FlatBuffer (schema: TensorFlow's ``schema.fbs``; the file identifier
``TFL3`` sits at bytes 4-8). It is read here with the ``tflite`` package from the package index,
the schema's generated accessors, which only index into the bytes: nothing in the file is run.

The file holds one graph: a list of *tensors* (shape, type, quantization, and for constants a
*buffer* of raw bytes) and a list of *operators* that read and write them. The graphs of
MobileNetV2 1.0 224 (Sandler et al., 2018) are, in order::

    CONV_2D 3x3/2 -> 32 (ReLU6)                                    stem
    17 inverted residual blocks:                                   block1 .. block17
        [CONV_2D 1x1 expand (ReLU6)]   (absent in block1, whose expansion factor is 1)
        DEPTHWISE_CONV_2D 3x3/s (ReLU6)
        CONV_2D 1x1 project (linear)
        [ADD]                           (where stride 1 and the channels are unchanged)
    CONV_2D 1x1 -> 1280 (ReLU6)                                    head
    AVERAGE_POOL_2D or MEAN, CONV_2D 1x1 -> 1001 (linear)          classifier
    RESHAPE, SOFTMAX                   (and QUANTIZE at either end of the int8 files)

Batch normalization is already folded into the weights and biases. Quantized tensors store
integers ``q`` with a scale and a zero point, per tensor or per output channel (the tensor's
``quantized_dimension``); the real value is

    w = scale * (q - zero_point).

Biases are int32 with zero point 0 and ``scale = input_scale * weight_scale``. The input is
uint8 RGB ``p`` in 0..255 with the real value ``scale * (p - zero_point)``, which becomes the
network's preprocessing (``mean = zero_point``, ``std = 1 / scale``).

TFLite pads ``SAME`` convolutions as TensorFlow does: ``total = max((ceil(n / s) - 1) s + k - n, 0)``
pixels, the smaller half first. At stride 2 on an even size that is 0 before and 1 after,
which a symmetric padding cannot express; :func:`same_padding` gives both sides.

Weights are stored OHWI (depthwise: ``1 x KH x KW x C``) and returned OIHW (depthwise:
``C x 1 x KH x KW``, one filter per channel).
"""
import struct
from pathlib import Path

import numpy as np

__all__ = ["read_mobilenet_v2", "same_padding", "BLOCKS", "layer_names", "is_tflite"]

#: Inverted residual stages of MobileNetV2 1.0: (expansion t, output channels c, repeats n,
#: first stride s), Table 2 of Sandler et al.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))


def _blocks():
    """``[(in_channels, expansion, out_channels, stride)]`` of the 17 inverted residual blocks."""
    blocks, channels = [], 32
    for expansion, out, repeats, stride in STAGES:
        for index in range(repeats):
            blocks.append((channels, expansion, out, stride if index == 0 else 1))
            channels = out
    return tuple(blocks)


#: The 17 inverted residual blocks: (in_channels, expansion, out_channels, stride).
BLOCKS = _blocks()


def layer_names():
    """The names of MobileNetV2's parameter layers in network order, as :mod:`sensloc.nets`
    builds them: ``stem``, ``block<i>.expand`` (not in block1), ``block<i>.depthwise``,
    ``block<i>.project``, ``head``, ``classifier``."""
    names = ["stem"]
    for number, (_, expansion, _, _) in enumerate(BLOCKS, start=1):
        names += ([f"block{number}.expand"] if expansion != 1 else []) + \
            [f"block{number}.depthwise", f"block{number}.project"]
    return names + ["head", "classifier"]


def same_padding(size, kernel, stride):
    """TensorFlow's ``SAME`` padding of one axis: ``(before, after)``.

    ``total = max((ceil(size / stride) - 1) * stride + kernel - size, 0)``, ``before = total // 2``.
    """
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def is_tflite(head):
    """Whether the first 8 bytes of a file carry the TFLite FlatBuffer identifier."""
    return len(head) >= 8 and head[4:8] == b"TFL3"


# --------------------------------------------------------------------------------------------
# The FlatBuffer
# --------------------------------------------------------------------------------------------

def _schema():
    try:
        import tflite
    except ImportError:  # pragma: no cover - install_requires has it
        raise ImportError("reading .tflite files needs the 'tflite' package: "
                          "pip install tflite") from None
    return tflite


def _names(enum_class):
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


class _Graph:
    """The operators of a TFLite file's first subgraph, with their constants dequantized."""

    def __init__(self, path):
        schema = _schema()
        self.path = Path(path)
        self.data = self.path.read_bytes()
        if not is_tflite(self.data[:8]):
            raise ValueError(f"{self.path}: not a TFLite file (no 'TFL3' identifier)")
        self.schema = schema
        self.model = schema.Model.GetRootAsModel(self.data, 0)
        if self.model.SubgraphsLength() < 1:
            raise ValueError(f"{self.path}: the TFLite file holds no graph")
        self.graph = self.model.Subgraphs(0)
        codes = _names(schema.BuiltinOperator)
        self.opcodes = []
        for index in range(self.model.OperatorCodesLength()):
            code = self.model.OperatorCodes(index)
            # Files from before the 2.3 schema keep the code in the deprecated int8 field.
            self.opcodes.append(codes.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()),
                                          "UNKNOWN"))
        self.types = _names(schema.TensorType)
        self.activations = _names(schema.ActivationFunctionType)
        self.paddings = _names(schema.Padding)

    def operators(self):
        """``[(opcode name, operator)]`` in execution order."""
        return [(self.opcodes[self.graph.Operators(i).OpcodeIndex()], self.graph.Operators(i))
                for i in range(self.graph.OperatorsLength())]

    def tensor(self, index):
        return self.graph.Tensors(int(index))

    def quantization(self, tensor):
        """``(scale, zero_point, axis)``: arrays (one value per tensor or per channel)."""
        q = tensor.Quantization()
        if q is None or q.ScaleLength() == 0:
            raise ValueError(f"{self.path}: tensor {tensor.Name().decode()!r} is not quantized")
        return (q.ScaleAsNumpy().astype(np.float64), q.ZeroPointAsNumpy().astype(np.float64),
                q.QuantizedDimension())

    def constant(self, index):
        """A constant tensor, dequantized to float64: ``scale * (q - zero_point)``."""
        tensor = self.tensor(index)
        shape = tuple(int(n) for n in tensor.ShapeAsNumpy())
        kind = self.types.get(tensor.Type(), "UNKNOWN")
        dtypes = {"UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32, "FLOAT32": np.float32}
        if kind not in dtypes:
            raise ValueError(f"{self.path}: tensor {tensor.Name().decode()!r} has type {kind}")
        buffer = self.model.Buffers(tensor.Buffer())
        dtype = np.dtype(dtypes[kind]).newbyteorder("<")
        expected = int(np.prod(shape)) * dtype.itemsize
        if buffer.Offset() > 1:  # large models keep buffers after the FlatBuffer
            start, size = buffer.Offset(), buffer.Size()
            raw = self.data[start:start + size]
        else:
            raw = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
        if len(raw) != expected:
            raise ValueError(f"{self.path}: tensor {tensor.Name().decode()!r} should hold "
                             f"{expected} bytes, the file has {len(raw)} (truncated?)")
        values = np.frombuffer(raw, dtype).reshape(shape).astype(np.float64)
        if kind == "FLOAT32":
            return values
        scale, zero_point, axis = self.quantization(tensor)
        if scale.size > 1:  # per channel along `axis`
            if scale.size != shape[axis]:
                raise ValueError(f"{self.path}: {scale.size} scales for {shape[axis]} channels")
            along = [1] * len(shape)
            along[axis] = -1
            scale, zero_point = scale.reshape(along), zero_point.reshape(along)
        return scale * (values - zero_point)

    def options(self, operator, kind):
        """An operator's builtin options table as ``kind`` (e.g. ``Conv2DOptions``)."""
        table = operator.BuiltinOptions()
        options = getattr(self.schema, kind)()
        options.Init(table.Bytes, table.Pos)
        return options


def _read(path):
    """Parse a file into its operators; any failure of the FlatBuffer accessors (a truncated or
    damaged file makes them read past the end) becomes one ValueError naming the file."""
    try:
        graph = _Graph(path)
        return graph, graph.operators()
    except (IndexError, ValueError, TypeError, AttributeError, OverflowError, struct.error) as error:
        if isinstance(error, ValueError) and str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path}: damaged or truncated TFLite file ({type(error).__name__}: "
                         f"{error})") from None


def read_mobilenet_v2(path):
    """Weights and input preprocessing of a quantized MobileNetV2 1.0 224 TFLite file.

    Parameters
    ----------
    path : str or os.PathLike
        E.g. ``mobilenet_v2_1.0_224_quant.tflite`` (uint8, per-tensor scales) or
        ``tf2_mobilenet_v2_1.0_224_ptq.tflite`` (int8, per-channel scales).

    Returns
    -------
    params : dict
        ``{layer name: {"weight": float32 OIHW, "bias": float32 (O,)}}`` for the names of
        :func:`layer_names`; ``classifier``'s weight is ``(1001, 1280)``.
    input_quantization : (float, float)
        ``(scale, zero_point)`` of the uint8 input: the network sees ``scale * (p - zero_point)``.

    Raises
    ------
    ValueError
        Naming the file: not a TFLite file, damaged or truncated, or not MobileNetV2 1.0 224
        (the message says which operator or shape differs).
    """
    graph, operators = _read(path)
    try:
        return _mobilenet_v2(graph, operators)
    except (IndexError, TypeError, AttributeError, OverflowError, struct.error) as error:
        raise ValueError(f"{path}: damaged or truncated TFLite file ({type(error).__name__}: "
                         f"{error})") from None


def _mobilenet_v2(graph, operators):
    path = graph.path
    kinds = [kind for kind, _ in operators]
    convolutions = [(kind, op) for kind, op in operators
                    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    names = layer_names()
    if len(convolutions) != len(names) or kinds.count("ADD") != 10:
        raise ValueError(f"{path}: not MobileNetV2 1.0 224 ({len(convolutions)} convolutions and "
                         f"{kinds.count('ADD')} additions; expected {len(names)} and 10)")
    expected = _expected_layers()
    params = {}
    for name, (kind, op), (want_kind, shape, stride, activation) in zip(names, convolutions,
                                                                        expected):
        if kind != want_kind:
            raise ValueError(f"{path}: layer {name} is a {kind}, expected {want_kind}")
        options = graph.options(op, "Conv2DOptions" if kind == "CONV_2D"
                                else "DepthwiseConv2DOptions")
        got_activation = graph.activations.get(options.FusedActivationFunction())
        strides = (options.StrideH(), options.StrideW())
        if strides != (stride, stride) or got_activation != activation:
            raise ValueError(f"{path}: layer {name} has stride {strides} and activation "
                             f"{got_activation}, expected {stride} and {activation}")
        inputs = op.InputsAsNumpy()
        weight = graph.constant(inputs[1])
        if kind == "DEPTHWISE_CONV_2D":  # (1, KH, KW, C) -> (C, 1, KH, KW)
            weight = weight.transpose(3, 0, 1, 2)
        else:  # OHWI -> OIHW
            weight = weight.transpose(0, 3, 1, 2)
        if weight.shape != shape:
            raise ValueError(f"{path}: layer {name} has weights {weight.shape}, expected {shape}")
        bias = graph.constant(inputs[2])
        if name == "classifier":
            weight = weight.reshape(weight.shape[:2])
        params[name] = {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}

    first = graph.tensor(graph.graph.Inputs(0))
    if graph.types.get(first.Type()) != "UINT8":
        raise ValueError(f"{path}: the input is {graph.types.get(first.Type())}, expected UINT8")
    scale, zero_point, _ = graph.quantization(first)
    return params, (float(scale[0]), float(zero_point[0]))


def _expected_layers():
    """``[(operator, OIHW shape, stride, fused activation)]`` for :func:`layer_names`."""
    layers = [("CONV_2D", (32, 3, 3, 3), 2, "RELU6")]
    for in_channels, expansion, out_channels, stride in BLOCKS:
        hidden = in_channels * expansion
        if expansion != 1:
            layers.append(("CONV_2D", (hidden, in_channels, 1, 1), 1, "RELU6"))
        layers.append(("DEPTHWISE_CONV_2D", (hidden, 1, 3, 3), stride, "RELU6"))
        layers.append(("CONV_2D", (out_channels, hidden, 1, 1), 1, "NONE"))
    return layers + [("CONV_2D", (1280, 320, 1, 1), 1, "RELU6"),
                     ("CONV_2D", (1001, 1280, 1, 1), 1, "NONE")]
