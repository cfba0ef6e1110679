"""weights.tflite: MobileNetV2's quantized TFLite files read without TensorFlow, checked against
the TFLite interpreter's own reading of the same tensors (``ai-edge-litert``, test-only)."""
import numpy as np
import pytest

from conftest import shared_path
from sensloc.weights import tflite

FILES = ("mobilenet_v2_1.0_224_quant.tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite")


def model_path(name):
    return shared_path("weights", "mobilenet-tflite", name)


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)),   # even size, stride 2: TensorFlow pads after only
    (225, 3, 2, (1, 1)),
    (112, 3, 1, (1, 1)),
    (7, 1, 1, (0, 0)),
    (224, 7, 2, (2, 3)),   # total 5: the smaller half before
])
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    before, after = tflite.same_padding(size, kernel, stride)
    assert (before, after) == expected
    # the padded size gives ceil(size / stride) outputs, as SAME promises
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


def test_layer_names_follow_the_blocks():
    names = tflite.layer_names()
    assert len(tflite.BLOCKS) == 17 and len(names) == 53
    assert names[:4] == ["stem", "block1.depthwise", "block1.project", "block2.expand"]
    assert names[-2:] == ["head", "classifier"]


@pytest.mark.parametrize("name", FILES)
def test_dequantized_weights_equal_the_interpreters(name):
    """Every convolution's weights and biases, dequantized by the interpreter's quantization
    parameters (per tensor or per channel) and laid out OIHW, equal ours exactly."""
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter",
                                             reason="the TFLite interpreter is the reference")
    path = model_path(name)
    params, (scale, zero_point) = tflite.read_mobilenet_v2(path)
    interpreter = interpreter_module.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}

    def dequantized(index):
        q = details[index]["quantization_parameters"]
        values = interpreter.get_tensor(index).astype(np.float64)
        scales, zeros = q["scales"].astype(np.float64), q["zero_points"].astype(np.float64)
        if scales.size > 1:
            shape = [1] * values.ndim
            shape[q["quantized_dimension"]] = -1
            scales, zeros = scales.reshape(shape), zeros.reshape(shape)
        return scales * (values - zeros)

    convolutions = [op for op in interpreter._get_ops_details()
                    if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert [n for n in tflite.layer_names()] == list(params)
    assert len(convolutions) == len(params)
    per_channel = False
    for layer, op in zip(params, convolutions):
        weight = dequantized(op["inputs"][1])
        per_channel |= details[op["inputs"][1]]["quantization_parameters"]["scales"].size > 1
        order = (3, 0, 1, 2) if op["op_name"] == "DEPTHWISE_CONV_2D" else (0, 3, 1, 2)
        weight = weight.transpose(order).reshape(params[layer]["weight"].shape)
        np.testing.assert_array_equal(params[layer]["weight"], weight.astype(np.float32))
        np.testing.assert_array_equal(params[layer]["bias"],
                                      dequantized(op["inputs"][2]).astype(np.float32))
    assert per_channel == ("ptq" in name)  # the int8 file is quantized per output channel
    first = interpreter.get_input_details()[0]
    assert first["dtype"] == np.uint8
    assert (scale, zero_point) == pytest.approx(first["quantization"], rel=1e-7)


@pytest.mark.parametrize("cut", [0, 7, 100, 100_000, 1_800_000])
def test_a_truncated_file_is_refused_naming_it(tmp_path, cut):
    data = model_path(FILES[0]).read_bytes()
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(data[:cut])
    with pytest.raises(ValueError, match=r"cut\.tflite: (not a TFLite file|damaged or truncated)"):
        tflite.read_mobilenet_v2(bad)


def test_another_network_is_refused(tmp_path):
    """A TFLite file with another graph (here: the identifier on non-model bytes) is refused."""
    bad = tmp_path / "other.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    with pytest.raises(ValueError, match="other.tflite"):
        tflite.read_mobilenet_v2(bad)
