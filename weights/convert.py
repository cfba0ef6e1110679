"""Convert weight files people already have into the project's format (:mod:`weights.format`).

:func:`convert` recognises a file by its content (never by its name alone) and dispatches:

==================  ============================================  ==========================
format              recognised by                                 reader
==================  ============================================  ==========================
``keras``           HDF5 with a ``layer_names`` attribute         :mod:`weights.keras_h5`
``torch``           zip (``PK``) or legacy ``torch.save`` stream  :mod:`weights.torch_pth`
``deep-compression``  file size equal to what its header implies  :mod:`weights.deep_compression`
``tflite``          FlatBuffer identifier ``TFL3`` at bytes 4-8   :mod:`weights.tflite`
``sensloc``         HDF5 with ``format = "sensloc-weights"``      :mod:`weights.format`
==================  ============================================  ==========================

Preprocessing comes with the source: Keras VGG was trained on Caffe-style input
(:data:`CAFFE_VGG16`), torchvision VGG on its own normalisation (:data:`TORCHVISION`), the
Caffe SqueezeNet on BGR minus (104, 117, 123) at 227x227 (:data:`CAFFE_SQUEEZENET`). All three
use the standard ImageNet class order (sorted WordNet ids), so 1000-class networks get
:func:`imagenet_class_names`.

The quantized MobileNetV2 TFLite files (uint8 or int8 weights, per tensor or per channel) are
dequantized to float32 (:func:`weights.tflite.read_mobilenet_v2`; batch norm is already folded
in them). Their input is a uint8 RGB pixel ``p`` that the quantized network reads as
``scale * (p - zero_point)``; the preprocessing ``mean = zero_point``, ``std = 1 / scale`` makes
the float network see exactly that. Their 1001 classes are ``"background"`` followed by the
1000 ImageNet classes in the standard order (:data:`MOBILENET_CLASSES`).
"""
from pathlib import Path

import h5py
import numpy as np

from sensloc import nets

from sensloc.weights import deep_compression, keras_h5, tflite, torch_pth
from sensloc.weights import format as weight_format
from sensloc._files import sha256_file
from sensloc.weights.cache import installed_path
from sensloc.weights.classes import imagenet_class_names
from sensloc.data.images import CAFFE_SQUEEZENET, CAFFE_VGG16, TORCHVISION, Preprocessing

__all__ = ["convert", "detect_format", "read_torchvision_vgg", "torchvision_vgg_names",
           "FORMATS"]

#: Source formats :func:`convert` reads.
FORMATS = ("keras", "torch", "deep-compression", "tflite", "sensloc")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"


# --------------------------------------------------------------------------------------------
# Recognising a file
# --------------------------------------------------------------------------------------------

def detect_format(path):
    """Which of :data:`FORMATS` a file is in, from its bytes.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is in none of them (the message lists what is supported); a ``.net`` file
        whose size disagrees with its header is reported as such (truncated or extended).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as stream:
        start = stream.read(8)
    if start == _HDF5_SIGNATURE:
        try:
            with h5py.File(path, "r") as file:
                if "format" in file.attrs:
                    return "sensloc"
                if keras_h5.is_keras_weights(file):
                    return "keras"
        except OSError as error:
            raise ValueError(f"{path}: an HDF5 signature but not a complete HDF5 file "
                             f"({error})") from None
        raise ValueError(f"{path}: an HDF5 file, but neither a sensloc weight file nor Keras "
                         "weights (no 'format' or 'layer_names' attribute)")
    if tflite.is_tflite(start):
        return "tflite"
    if start.startswith(_ZIP_SIGNATURE):
        return "torch"
    # A legacy torch.save stream starts with a protocol-2 pickle of its magic number.
    if start[:2] == b"\x80\x02" and start[2:3] == b"\x8a":
        return "torch"
    size = path.stat().st_size
    header_bytes = len(nets.build("squeezenet1_0").parameter_shapes()) * 4
    if size >= header_bytes:
        counts = np.fromfile(path, "<u4", count=header_bytes // 4)
        if deep_compression.expected_size(counts) == size:
            return "deep-compression"
    if path.suffix == ".net":
        deep_compression.decode(path)  # raises the precise size error
    raise ValueError(f"{path}: unrecognised weight file; sensloc converts Keras VGG .h5 files, "
                     "torchvision VGG .pth files, the Deep Compression SqueezeNet .net file "
                     "and the quantized MobileNetV2 .tflite files")


# --------------------------------------------------------------------------------------------
# torchvision VGG
# --------------------------------------------------------------------------------------------

def torchvision_vgg_names(architecture):
    """Map torchvision VGG state-dict prefixes to ``nets`` layer names.

    torchvision's ``features`` is a ``Sequential`` of ``Conv2d, ReLU`` pairs with a
    ``MaxPool2d`` closing each block, so a convolution's index is found by walking the
    configuration: +2 per convolution, +1 per pool. ``classifier`` is ``Linear, ReLU, Dropout,
    Linear, ReLU, Dropout, Linear``: indices 0, 3, 6.

    Parameters
    ----------
    architecture : str
        A key of :data:`nets.CONFIGURATIONS`.

    Returns
    -------
    dict
        e.g. for VGG16 ``{"features.0": "conv1_1", "features.2": "conv1_2",
        "features.5": "conv2_1", ..., "features.28": "conv5_3", "classifier.0": "fc6",
        "classifier.3": "fc7", "classifier.6": "fc8"}``.
    """
    names, index, block, position = {}, 0, 1, 1
    for item in nets.CONFIGURATIONS[architecture]:
        if item == "M":
            index, block, position = index + 1, block + 1, 1
        else:
            names[f"features.{index}"] = f"conv{block}_{position}"
            index, position = index + 2, position + 1
    names.update({"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"})
    return names


def read_torchvision_vgg(path):
    """Read a torchvision VGG state dict (``vgg16-397923af.pth`` and the like), safely.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    architecture : str
        Recognised from the state dict's keys (vgg11, vgg13, vgg16 or vgg19).
    params : dict
        ``nets`` parameters, float32; torchvision's layouts (OIHW, (out, in), flatten in
        (C, H, W) order) are already those of ``nets``.

    Raises
    ------
    UnsafePickleError, ValueError
        See :func:`weights.torch_pth.load_state_dict`; also when the keys match no plain VGG
        (batch-norm variants are refused by name).
    """
    state = torch_pth.load_state_dict(path)
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}  # DataParallel
    keys = set(state)
    for architecture in nets.CONFIGURATIONS:
        names = torchvision_vgg_names(architecture)
        if keys == {f"{prefix}.{kind}" for prefix in names for kind in ("weight", "bias")}:
            break
    else:
        if any(key.endswith("running_mean") for key in keys):
            raise ValueError(f"{path}: a batch-normalised VGG (vgg*_bn); sensloc supports plain "
                             "VGG11/13/16/19 only")
        sample = sorted(keys)[:6]
        raise ValueError(f"{path}: the state dict keys ({len(keys)}, e.g. {sample}) match no "
                         f"torchvision VGG ({sorted(nets.CONFIGURATIONS)})")
    params = {}
    for prefix, name in names.items():
        params[name] = {kind: np.asarray(state.pop(f"{prefix}.{kind}"), dtype=np.float32)
                        for kind in ("weight", "bias")}
    return architecture, params


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------

def _read_source(path, kind):
    """``(architecture, params, preprocessing)`` of a source file in format ``kind``."""
    if kind == "keras":
        architecture, params = keras_h5.read_vgg(path)
        return architecture, params, CAFFE_VGG16
    if kind == "torch":
        architecture, params = read_torchvision_vgg(path)
        return architecture, params, TORCHVISION
    if kind == "deep-compression":
        return "squeezenet1_0", deep_compression.decode(path), CAFFE_SQUEEZENET
    if kind == "tflite":
        params, (scale, zero_point) = tflite.read_mobilenet_v2(path)
        return "mobilenet_v2", params, tflite_preprocessing(scale, zero_point)
    raise AssertionError(kind)


def tflite_preprocessing(scale, zero_point):
    """What a quantized TFLite network's uint8 RGB input means, as a :class:`Preprocessing`:
    ``x = (p - zero_point) / (1 / scale) = scale * (p - zero_point)``, at 224 x 224."""
    return Preprocessing(input_size=(224, 224), channel_order="RGB", pixel_scale=1.0,
                         mean=(zero_point,) * 3, std=(1 / scale,) * 3, resize="squash")


def mobilenet_class_names():
    """The 1001 classes of the TensorFlow MobileNets: ``"background"``, then ImageNet's 1000."""
    return ["background"] + imagenet_class_names()


def _num_classes(architecture, params):
    """Classes of the source: the bias length of the architecture's last layer."""
    # nets.build allocates with np.zeros, which costs no memory until written.
    last = list(nets.build(architecture).parameter_shapes())[-1]
    if last not in params:
        raise ValueError(f"no {last!r} layer in the converted parameters")
    return len(params[last]["bias"])


def convert(path, out=None, *, cache_dir=None, class_names=None, created_by=None):
    """Convert a weight file and install it (or write it to ``out``).

    Parameters
    ----------
    path : str or os.PathLike
        A Keras VGG ``.h5``, a torchvision VGG ``.pth``, the Deep Compression SqueezeNet
        ``.net`` file, a quantized MobileNetV2 ``.tflite`` file, or a sensloc ``.h5`` (checked
        and copied).
    out : str or os.PathLike, optional
        Destination; default ``<cache>/weights/<architecture>.h5`` (see :mod:`weights.cache`),
        replaced atomically.
    cache_dir : str or os.PathLike, optional
        Cache folder for the default destination.
    class_names : sequence of str, optional
        Default: the ImageNet names for 1000 classes, else ``"class 0"``, ``"class 1"``, ...
    created_by : str, optional
        Default ``"sensloc <version> weights convert"``.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Naming ``path``: unrecognised or damaged file, or arrays that do not fit the
        architecture (:class:`weights.torch_pth.UnsafePickleError` for a suspicious pickle).
    """
    path = Path(path)
    kind = detect_format(path)
    if kind == "sensloc":
        net = weight_format.load(path)
        target = Path(out) if out is not None else installed_path(net.name, cache_dir)
        if target.exists() and target.resolve() == path.resolve():
            return target  # already installed there
        return weight_format.save(
            target, net, net.preprocessing, class_names or net.class_names,
            source_file=net.source["file"], source_sha256=net.source["sha256"],
            created_by=created_by or net.source["created_by"])

    digest = sha256_file(path)
    architecture, params, preprocessing = _read_source(path, kind)
    num_classes = _num_classes(architecture, params)
    net = nets.build(architecture, num_classes=num_classes)
    try:
        net.load_parameters(params)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    del params
    if class_names is None and architecture == "mobilenet_v2":
        class_names = mobilenet_class_names()
    if class_names is None:
        class_names = imagenet_class_names() if num_classes == 1000 \
            else [f"class {index}" for index in range(num_classes)]
    target = Path(out) if out is not None else installed_path(architecture, cache_dir)
    created_by = created_by or weight_format.created_by_text("weights convert")
    return weight_format.save(target, net, preprocessing, class_names, source_file=path.name,
                              source_sha256=digest, created_by=created_by)
