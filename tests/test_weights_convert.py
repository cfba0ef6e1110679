"""weights.convert and its readers, checked against independent references.

* Keras VGG16: a full-size file in Keras's real HDF5 layout with random values, against a
  PyTorch forward pass written here that consumes the Keras arrays directly (HWIO kernels,
  (H, W, C) flatten order).
* torchvision VGG16: ``torch.save`` of a torchvision-shaped ``torch.nn`` module, against that
  module's own forward pass.
* Deep Compression SqueezeNet: the real file, decoded and compared with a byte-by-byte decoder
  written here, then classifying scikit-image's photos.
"""
import hashlib

import h5py
import numpy as np
import pytest

from sensloc import nets
from sensloc import weights
from conftest import shared_path
from sensloc.weights import deep_compression, keras_h5
from sensloc.weights import format as weight_format
from sensloc.weights.convert import (convert, detect_format, read_torchvision_vgg,
                                     torchvision_vgg_names)
from sensloc.data.images import CAFFE_SQUEEZENET, CAFFE_VGG16, TORCHVISION, resize_image


def _relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _assert_input_matters(logits):
    # Guard against a vacuous match: with collapsing activations the logits would be the
    # biases whatever the conv weights, and any mapping would "agree".
    assert np.abs(logits[0] - logits[1]).max() > 0.1 * np.abs(logits).max()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(42)
    # Pixel-like values after a Caffe-style mean subtraction; two different images.
    return rng.uniform(-120, 135, (2, 3, 224, 224)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Keras VGG16
# --------------------------------------------------------------------------------------------

def _keras_layers(configuration):
    """Keras VGG layer names in order, weightless ones included, with HWIO/dense shapes."""
    layers, block, index, channels = [("input_1", None)], 1, 1, 3
    for item in configuration:
        if item == "M":
            layers.append((f"block{block}_pool", None))
            block, index = block + 1, 1
        else:
            layers.append((f"block{block}_conv{index}", (3, 3, channels, item)))
            channels, index = item, index + 1
    layers += [("flatten", None), ("fc1", (7 * 7 * channels, 4096)), ("fc2", (4096, 4096)),
               ("predictions", (4096, 1000))]
    return layers


def _write_keras_file(path, configuration, rng=None, names="keras1", wrap=False):
    """Keras's legacy weight layout; random He-scaled values, or unallocated (zeros).

    ``names="keras1"`` uses the names of the published 2016 ImageNet files
    (``block1_conv1_W_1:0``); ``"keras2"`` those of later Keras 2 (``block1_conv1/kernel:0``).
    """
    with h5py.File(path, "w") as file:
        root = file.create_group("model_weights") if wrap else file
        layers = _keras_layers(configuration)
        root.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        root.attrs["backend"] = b"tensorflow"
        for name, shape in layers:
            group = root.create_group(name)
            if shape is None:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            if names == "keras1":
                weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            else:
                weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names])
            if rng is None:
                group.create_dataset(weight_names[0], shape=shape, dtype="f4")
                group.create_dataset(weight_names[1], shape=shape[-1:], dtype="f4")
                continue
            fan_in = int(np.prod(shape[:-1]))
            kernel = rng.standard_normal(shape, dtype=np.float32)
            kernel *= np.float32(np.sqrt(2.0 / fan_in))
            group.create_dataset(weight_names[0], data=kernel)
            del kernel
            group.create_dataset(weight_names[1],
                                 data=rng.normal(0, 0.1, shape[-1]).astype(np.float32))


@pytest.fixture(scope="module")
def keras_vgg16(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    _write_keras_file(path, nets.CONFIGURATIONS["vgg16"], np.random.default_rng(0))
    return path


def _keras_reference_logits(path, x):
    """VGG16 in PyTorch straight from the Keras arrays: independent of weights.keras_h5."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    with h5py.File(path, "r") as file, torch.no_grad():
        t = torch.from_numpy(x)
        for name in (n.decode() for n in file.attrs["layer_names"]):
            if "_conv" in name:
                kernel = torch.from_numpy(file[name][f"{name}_W_1:0"][()])  # (3, 3, in, out)
                bias = torch.from_numpy(file[name][f"{name}_b_1:0"][()])
                t = functional.relu(functional.conv2d(t, kernel.permute(3, 2, 0, 1), bias,
                                                      padding=1))
            elif name.endswith("_pool"):
                t = functional.max_pool2d(t, 2)
        # Keras flattens an (H, W, C) map: permute our (N, C, H, W) activation to match the
        # rows of its fc1 kernel, rather than permuting the kernel as the converter does.
        t = t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
        for name, relu in (("fc1", True), ("fc2", True), ("predictions", False)):
            kernel = torch.from_numpy(file[name][f"{name}_W_1:0"][()])  # (in, out)
            t = t @ kernel + torch.from_numpy(file[name][f"{name}_b_1:0"][()])
            if relu:
                t = functional.relu(t)
    return t.numpy()


def test_keras_vgg16_reproduces_an_independent_torch_forward(keras_vgg16, images, tmp_path):
    pytest.importorskip("torch")
    assert detect_format(keras_vgg16) == "keras"
    out = convert(keras_vgg16, out=tmp_path / "vgg16.h5", created_by="test")
    net = weight_format.load(out, architecture="vgg16")
    assert net.preprocessing == CAFFE_VGG16
    assert net.class_names[285] == "Egyptian cat" and len(net.class_names) == 1000
    assert net.source["file"] == keras_vgg16.name
    assert net.source["sha256"] == hashlib.sha256(keras_vgg16.read_bytes()).hexdigest()
    ours = net(images)
    del net
    reference = _keras_reference_logits(keras_vgg16, images)
    _assert_input_matters(reference)
    assert _relative_error(ours, reference) <= 1e-4


def test_keras_weight_names_are_read_from_the_file(tmp_path):
    # Later Keras 2 files nest arrays as "<layer>/kernel:0"; whole-model files wrap the
    # layout in a "model_weights" group. Both come out in weight_names order.
    configuration = [2, 2, "M"]  # a tiny VGG-like stack: only the reading is tested here
    for names, wrap in (("keras2", False), ("keras1", True)):
        path = tmp_path / f"{names}{wrap}.h5"
        _write_keras_file(path, configuration, np.random.default_rng(1), names, wrap)
        with h5py.File(path, "r") as file:
            layers = keras_h5.read_layer_arrays(file, path)
            root = file["model_weights"] if wrap else file
            kernel = "block1_conv1/kernel:0" if names == "keras2" else "block1_conv1_W_1:0"
            np.testing.assert_array_equal(layers["block1_conv1"][0],
                                          root["block1_conv1"][kernel][()])
        assert list(layers) == ["block1_conv1", "block1_conv2", "fc1", "fc2", "predictions"]
        assert [a.shape for a in layers["fc1"]] == [(7 * 7 * 2, 4096), (4096,)]


def test_keras_notop_and_theano_files_are_refused(tmp_path):
    notop = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_keras_file(notop, nets.CONFIGURATIONS["vgg16"])
    with h5py.File(notop, "r+") as file:
        names = [n for n in file.attrs["layer_names"] if not n.startswith((b"fc", b"pred"))]
        file.attrs["layer_names"] = np.array(names)
    with pytest.raises(ValueError, match="'_notop' file"):
        keras_h5.read_vgg(notop)

    theano = tmp_path / "vgg16_weights_th_dim_ordering_th_kernels.h5"
    _write_keras_file(theano, nets.CONFIGURATIONS["vgg16"])
    with h5py.File(theano, "r+") as file:
        group = file["block1_conv1"]
        del group["block1_conv1_W_1:0"]
        group.create_dataset("block1_conv1_W_1:0", shape=(64, 3, 3, 3), dtype="f4")
        del group["block1_conv1_b_1:0"]
        group.create_dataset("block1_conv1_b_1:0", shape=(3,), dtype="f4")
    with pytest.raises(ValueError, match="Theano-ordered"):
        keras_h5.read_vgg(theano)


def test_keras_vgg19_is_recognised(tmp_path):
    path = tmp_path / "vgg19.h5"
    _write_keras_file(path, nets.CONFIGURATIONS["vgg19"])  # unallocated: zeros, no disk
    architecture, params = keras_h5.read_vgg(path)
    assert architecture == "vgg19"
    assert {k: {n: a.shape for n, a in v.items()} for k, v in params.items()} \
        == nets.build("vgg19").parameter_shapes()


# --------------------------------------------------------------------------------------------
# torchvision VGG16
# --------------------------------------------------------------------------------------------

def _torchvision_vgg(torch, configuration):
    """A module with torchvision.models.VGG's structure and hence its state-dict keys."""
    nn = torch.nn

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            layers, channels = [], 3
            for item in configuration:
                if item == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1),
                               nn.ReLU(inplace=True)]
                    channels = item
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return VGG()


@pytest.fixture(scope="module")
def torchvision_vgg16(tmp_path_factory, images):
    """``(path, reference logits)`` of a random torchvision-layout VGG16 saved by torch."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = _torchvision_vgg(torch, nets.CONFIGURATIONS["vgg16"]).eval()
    with torch.no_grad():
        for module in model.modules():  # He scaling keeps the signal alive through 16 layers
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.normal_(module.bias, 0, 0.1)
        logits = model(torch.from_numpy(images)).numpy()
    path = tmp_path_factory.mktemp("torchvision") / "vgg16-random.pth"
    torch.save(model.state_dict(), path)
    return path, logits


def test_torchvision_vgg16_reproduces_torch_forward(torchvision_vgg16, images, tmp_path):
    path, reference = torchvision_vgg16
    assert detect_format(path) == "torch"
    net = weight_format.load(convert(path, out=tmp_path / "vgg16.h5"), architecture="vgg16")
    assert net.preprocessing == TORCHVISION
    _assert_input_matters(reference)
    assert _relative_error(net(images), reference) <= 1e-4


def test_torchvision_index_mapping():
    assert torchvision_vgg_names("vgg16") == {
        "features.0": "conv1_1", "features.2": "conv1_2", "features.5": "conv2_1",
        "features.7": "conv2_2", "features.10": "conv3_1", "features.12": "conv3_2",
        "features.14": "conv3_3", "features.17": "conv4_1", "features.19": "conv4_2",
        "features.21": "conv4_3", "features.24": "conv5_1", "features.26": "conv5_2",
        "features.28": "conv5_3", "classifier.0": "fc6", "classifier.3": "fc7",
        "classifier.6": "fc8"}


@pytest.mark.parametrize("architecture", sorted(nets.CONFIGURATIONS))
def test_torchvision_mapping_matches_module_keys_and_shapes(architecture):
    torch = pytest.importorskip("torch")
    with torch.device("meta"):  # shapes only, nothing allocated
        model = _torchvision_vgg(torch, nets.CONFIGURATIONS[architecture])
    state = model.state_dict()
    names = torchvision_vgg_names(architecture)
    assert {f"{p}.{k}" for p in names for k in ("weight", "bias")} == set(state)
    shapes = nets.build(architecture).parameter_shapes()
    for prefix, name in names.items():
        assert tuple(state[f"{prefix}.weight"].shape) == shapes[name]["weight"]


def test_batch_norm_vgg_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "vgg16_bn.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64),
                "features.1.running_mean": torch.zeros(64)}, path)
    with pytest.raises(ValueError, match="batch-normalised"):
        read_torchvision_vgg(path)


# --------------------------------------------------------------------------------------------
# Deep Compression SqueezeNet (the real file)
# --------------------------------------------------------------------------------------------

SQUEEZENET = ("weights", "squeezenet-1.0-dc", "compressed_SqueezeNet.net")


def _decode_bytewise(raw, shapes):
    """Walk the file one field at a time in plain Python: a reference for the decoder."""
    counts = [int.from_bytes(raw[4 * i:4 * i + 4], "little") for i in range(len(shapes))]
    position, layers = 4 * len(shapes), {}
    for count, (name, shape) in zip(counts, shapes.items()):
        codebook = np.frombuffer(raw[position:position + 1024], "<f4")
        position += 1024
        outputs = shape["bias"][0]
        bias = np.frombuffer(raw[position:position + 4 * outputs], "<f4")
        position += 4 * outputs
        codes = raw[position:position + count]
        position += count
        weight = np.zeros(int(np.prod(shape["weight"])), np.float32)
        index = -1
        for k in range(count):
            byte = raw[position + k // 2]
            gap = byte & 15 if k % 2 == 0 else byte >> 4
            index += gap + 1
            weight[index] = codebook[codes[k]]
        position += (count + 1) // 2
        layers[name] = (weight.reshape(shape["weight"]), bias)
    return layers, position


def test_deep_compression_decoder_consumes_exactly_the_file():
    path = shared_path(*SQUEEZENET)
    raw = path.read_bytes()
    assert len(raw) == 675_763
    shapes = nets.build("squeezenet1_0").parameter_shapes()
    counts = np.frombuffer(raw, "<u4", count=len(shapes))
    assert deep_compression.expected_size(counts) == len(raw)
    params = deep_compression.decode(path)
    reference, consumed = _decode_bytewise(raw, shapes)
    assert consumed == len(raw)
    assert list(params) == list(shapes)
    for name, (weight, bias) in reference.items():
        np.testing.assert_array_equal(params[name]["weight"], weight, err_msg=name)
        np.testing.assert_array_equal(params[name]["bias"], bias, err_msg=name)
    # Pruning leaves about a third of the 3x3 weights.
    fraction = np.count_nonzero(params["fire9/expand3x3"]["weight"]) / 147456
    assert 0.25 < fraction < 0.35


@pytest.mark.parametrize("cut", [1, 1000])
def test_truncated_or_extended_deep_compression_file(tmp_path, cut):
    raw = shared_path(*SQUEEZENET).read_bytes()
    short = tmp_path / "compressed_SqueezeNet.net"
    short.write_bytes(raw[:-cut])
    message = f"{len(raw) - cut} bytes but its header implies {len(raw)}"
    with pytest.raises(ValueError, match=message):
        deep_compression.decode(short)
    with pytest.raises(ValueError, match=message):
        convert(short, out=tmp_path / "out.h5")
    longer = tmp_path / "longer.net"
    longer.write_bytes(raw + b"\0")
    with pytest.raises(ValueError, match="has extra bytes"):
        deep_compression.decode(longer)
    assert not (tmp_path / "out.h5").exists()


@pytest.fixture(scope="module")
def squeezenet(tmp_path_factory):
    path = shared_path(*SQUEEZENET)
    cache = tmp_path_factory.mktemp("cache")
    installed = convert(path, cache_dir=cache)
    assert installed == cache / "weights" / "squeezenet1_0.h5"
    return weights.load("squeezenet1_0", cache_dir=cache)


@pytest.mark.parametrize("photo, index, name, low, high", [
    ("chelsea", 285, "Egyptian cat", 0.76, 0.82),
    ("coffee", 967, "espresso", 0.95, 1.0),
])
def test_real_squeezenet_classifies_real_photos(squeezenet, photo, index, name, low, high):
    data = pytest.importorskip("skimage.data")
    pre = squeezenet.preprocessing
    assert pre == CAFFE_SQUEEZENET
    assert squeezenet.source["sha256"] == \
        "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261"
    image = resize_image(getattr(data, photo)(), pre.input_size, pre.resize)
    probabilities = nets.softmax(squeezenet(pre.apply(image)[None]))[0]
    assert probabilities.argmax() == index
    assert squeezenet.class_names[index] == name
    assert low <= probabilities[index] <= high


# --------------------------------------------------------------------------------------------
# Recognition
# --------------------------------------------------------------------------------------------

def test_unrecognised_files(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x00" * 5000)
    with pytest.raises(ValueError, match="unrecognised weight file"):
        convert(path)
    hdf5 = tmp_path / "other.h5"
    with h5py.File(hdf5, "w") as file:
        file["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="neither a sensloc weight file nor Keras"):
        detect_format(hdf5)
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "absent.pth")


def test_converting_a_sensloc_file_installs_a_copy(tmp_path):
    net = nets.random_parameters(nets.build("squeezenet1_0"))
    source = weight_format.save(tmp_path / "mine.h5", net, CAFFE_SQUEEZENET,
                                [str(i) for i in range(1000)], "trained.npz", "0" * 64,
                                created_by="a student")
    assert detect_format(source) == "sensloc"
    installed = convert(source, cache_dir=tmp_path / "cache")
    assert weights.installed(tmp_path / "cache") == [
        ("squeezenet1_0", installed, "trained.npz", "0" * 64)]
    assert weight_format.read_header(installed)["created_by"] == "a student"


# --------------------------------------------------------------------------------------------
# MobileNetV2 TFLite
# --------------------------------------------------------------------------------------------

TFLITE_FILES = ("mobilenet_v2_1.0_224_quant.tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite")


@pytest.mark.parametrize("name", TFLITE_FILES)
def test_tflite_mobilenet_converts_with_its_labels_and_quantization(name, tmp_path):
    """The converted file holds the reader's float32 parameters, the 1001 labels of the
    publisher's ``imagenet_labels.txt`` and a preprocessing that is the input quantization."""
    from sensloc.weights import tflite
    source = shared_path("weights", "mobilenet-tflite", name)
    assert detect_format(source) == "tflite"
    net = weights.load(convert(source, out=tmp_path / "m.h5"))
    assert net.name == "mobilenet_v2" and net.num_classes == 1001
    params, (scale, zero_point) = tflite.read_mobilenet_v2(source)
    for layer, arrays in params.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(net.parameters()[layer][key], value)
    labels = shared_path("weights", "mobilenet-tflite", "imagenet_labels.txt")
    assert net.class_names == labels.read_text().splitlines()
    assert net.class_names[0] == "background" and net.class_names[286] == "Egyptian cat"
    pre = net.preprocessing
    assert pre.channel_order == "RGB" and pre.input_size == (224, 224)
    pixels = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    pre16 = type(pre)(**{**pre.__dict__, "input_size": (16, 16)})
    # the float network sees what the quantized one reads: scale * (p - zero_point)
    np.testing.assert_allclose(pre16.apply(pixels), scale * (pixels.transpose(2, 0, 1)
                                                             - zero_point), rtol=1e-6, atol=1e-6)
    assert net.source["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.mark.parametrize("cut", [9, 4096, 1_000_000])
def test_truncated_tflite_file_is_refused_by_convert(tmp_path, cut):
    data = shared_path("weights", "mobilenet-tflite", TFLITE_FILES[1]).read_bytes()
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(data[:cut])
    with pytest.raises(ValueError, match=r"cut\.tflite: (not a TFLite file|damaged or truncated)"):
        convert(bad, out=tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
