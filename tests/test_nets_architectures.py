"""Whole architectures: structure, parameter checks, and logits/gradients against PyTorch."""
import numpy as np
import pytest

from sensloc import nets


def test_vgg16_structure():
    net = nets.build("vgg16")
    shapes = net.parameter_shapes()
    assert len([n for n in shapes if n.startswith("conv")]) == 13
    assert [n for n in shapes if n.startswith("fc")] == ["fc6", "fc7", "fc8"]
    assert shapes["conv1_1"]["weight"] == (64, 3, 3, 3)
    assert shapes["fc6"]["weight"] == (4096, 512 * 7 * 7)
    assert shapes["fc8"]["weight"] == (1000, 4096)
    total = sum(int(np.prod(s)) for p in shapes.values() for s in p.values())
    assert total == 138_357_544  # VGG16's published parameter count


@pytest.mark.parametrize("name,convs,total", [
    ("vgg11", 8, 132_863_336), ("vgg13", 10, 133_047_848), ("vgg19", 16, 143_667_240)])
def test_vgg_family(name, convs, total):
    shapes = nets.build(name).parameter_shapes()
    assert len([n for n in shapes if n.startswith("conv")]) == convs
    assert sum(int(np.prod(s)) for p in shapes.values() for s in p.values()) == total


def test_squeezenet_structure():
    net = nets.build("squeezenet1_0")
    shapes = net.parameter_shapes()
    assert len(shapes) == 26  # conv1, 8 fire modules x 3, conv_final
    assert shapes["conv1"]["weight"] == (96, 3, 7, 7)
    assert shapes["fire9/expand3x3"]["weight"] == (256, 64, 3, 3)
    assert shapes["conv_final"]["weight"] == (1000, 512, 1, 1)
    assert sum(int(np.prod(s)) for p in shapes.values() for s in p.values()) == 1_248_424
    x = np.zeros((1, 3, 227, 227), np.float32)
    trace = net.forward(x)
    assert trace.outputs["pool8"].shape == (1, 512, 13, 13)
    assert trace.outputs["conv_final"].shape == (1, 1000, 15, 15)  # 1x1 conv with pad 1


def test_load_parameters_names_first_mismatch():
    net = nets.build("squeezenet1_0")
    params = {k: {kk: np.zeros(s, np.float32) for kk, s in v.items()}
              for k, v in net.parameter_shapes().items()}
    params["fire3/expand3x3"]["weight"] = np.zeros((64, 16, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"fire3/expand3x3/weight should have shape \(64, 16, 3, 3\)"):
        net.load_parameters(params)
    with pytest.raises(ValueError, match="missing layers"):
        nets.build("vgg16").load_parameters(params)


def test_bad_inputs_are_refused():
    net = nets.build("vgg16")
    with pytest.raises(ValueError, match="224x224"):
        net.forward(np.zeros((1, 3, 227, 227), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net.forward(np.zeros((3, 224, 224), np.float32))
    with pytest.raises(TypeError, match="float64"):
        net.forward(np.zeros((1, 3, 224, 224), np.float64))
    x = np.zeros((1, 3, 224, 224), np.float32)
    x[0, 1, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.forward(x)
    with pytest.raises(ValueError, match="unknown architecture"):
        nets.build("resnet50")


def compare_with_pytorch(net, x, dtype):
    """Logits and the top class's input gradient of ``net`` and its PyTorch twin, in ``dtype``.

    Gradients are compared in float64: in float32 a few pre-activations of a deep ReLU network
    lie within rounding error of zero, the two frameworks then take different sides of the kink
    and the gradient jumps there. In float64 that never happens, so the comparison is exact.
    """
    torch_reference = pytest.importorskip("torch_reference")
    torch = torch_reference.torch
    net.astype(dtype)
    x = x.astype(dtype)
    trace = net.forward(x)
    target = trace.output.argmax(axis=1)
    dx = net.backward(trace, np.eye(net.num_classes, dtype=dtype)[target])
    model = torch_reference.torch_model(net).to(torch.float64 if dtype == np.float64 else torch.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    logits = model(xt)
    logits[torch.arange(len(x)), torch.from_numpy(target)].sum().backward()
    return (torch_reference.relative_error(trace.output, logits.detach().numpy()),
            torch_reference.relative_error(dx, xt.grad.numpy()))


@pytest.mark.parametrize("batch", [1, 3])
def test_vgg16_matches_pytorch(batch):
    net = nets.random_parameters(nets.build("vgg16"), seed=1)
    x = np.random.default_rng(batch).normal(size=(batch, 3, 224, 224))
    logits_error, _ = compare_with_pytorch(net, x, np.float32)
    assert logits_error <= 1e-4
    logits_error, gradient_error = compare_with_pytorch(net, x, np.float64)
    assert logits_error <= 1e-10 and gradient_error <= 1e-10


def test_squeezenet_random_weights_match_pytorch():
    net = nets.random_parameters(nets.build("squeezenet1_0"), seed=2)
    x = np.random.default_rng(3).normal(size=(2, 3, 227, 227))
    logits_error, _ = compare_with_pytorch(net, x, np.float32)
    assert logits_error <= 1e-4
    logits_error, gradient_error = compare_with_pytorch(net, x, np.float64)
    assert logits_error <= 1e-10 and gradient_error <= 1e-10


def test_squeezenet_real_weights_match_pytorch_on_real_photos(squeezenet_file, photo_files):
    from sensloc import weights
    from sensloc.data import images
    net = weights.load(squeezenet_file)
    x = images.load_batch([photo_files["chelsea"], photo_files["coffee"]], net.preprocessing)
    logits_error, _ = compare_with_pytorch(net, x, np.float32)
    assert logits_error <= 1e-4
    logits_error, gradient_error = compare_with_pytorch(net, x, np.float64)
    assert logits_error <= 1e-10 and gradient_error <= 1e-10
