"""The project's own weight file format (HDF5), documented here and only here.

One file holds one pretrained network: its parameters in exactly the layout :mod:`nets` uses, and
everything needed to use them correctly (architecture, input preprocessing, class names) and to
trace them back (the source file they were converted from, and its SHA-256).

Layout (format version 1)
-------------------------
Root attributes

=====================  ======================================================================
``format``             ``"sensloc-weights"`` (identifies the file)
``format_version``     ``1`` (an integer; readers refuse versions newer than they know)
``architecture``       a name in :data:`nets.ARCHITECTURES`, e.g. ``"vgg16"``, ``"squeezenet1_0"``
``architecture_options``  JSON object of keyword arguments for :func:`nets.build`,
                       e.g. ``{"num_classes": 1000}``
``input_size``         ``int64 (2,)``: (H, W) the network expects
``channel_order``      ``"RGB"`` or ``"BGR"``
``pixel_scale``        float, multiplies 0..255 pixel values first
``mean``, ``std``      ``float64 (3,)``, in ``channel_order`` and scaled units
``resize``             ``"squash"`` or ``"crop"``
``source_file``        name (not path) of the file the weights were converted from
``source_sha256``      SHA-256 of that file, 64 lowercase hex digits
``created_by``         free text, e.g. ``"sensloc 0.1.0 weights convert"``
``training``           optional, for networks sensloc trained itself: a JSON object with at
                       least ``seed`` and ``command`` (the command that reproduces the file),
                       plus the recipe and the measured quality
=====================  ======================================================================

The six preprocessing attributes are those of :meth:`sensloc.data.images.Preprocessing.to_attrs`:
a pixel ``p`` (0..255, RGB) becomes ``x_c = (p_c * pixel_scale - mean_c) / std_c`` with the
channels in ``channel_order``.

Datasets

* ``class_names``: variable-length UTF-8 strings, one per output class, in class-index order.
* One group per parameterised layer, named by the layer's qualified name in :mod:`nets`; a name
  with ``/`` (SqueezeNet's ``fire2/squeeze1x1``) becomes nested groups. Each holds two float32
  datasets, ``weight`` and ``bias``:

  - convolution: ``weight (O, C, KH, KW)`` (PyTorch/Caffe OIHW), ``bias (O,)``;
  - fully connected: ``weight (D_out, D_in)`` (PyTorch's layout), ``bias (D_out,)``, where a
    flattened input is ordered channel-major ``(C, H, W)`` as in PyTorch (Keras's ``(H, W, C)``
    order is permuted by the converter, never here).

Layer names are VGG's ``conv1_1 .. conv5_3, fc6, fc7, fc8`` and SqueezeNet's ``conv1``,
``fire2/squeeze1x1``, ``fire2/expand1x1``, ``fire2/expand3x3``, ..., ``fire9/...``,
``conv_final``, and MobileNetV2's ``stem``, ``block1.depthwise``, ``block1.project``,
``block2.expand``, ..., ``block17.project``, ``head``, ``classifier`` (a depthwise convolution's
weight is ``(C, 1, KH, KW)``, PyTorch's layout for ``groups = C``).

Writing is atomic (:func:`save`): a reader sees the old file or the complete new one, never a
half-written one. :func:`load` checks everything it reads and names the file in every error.
"""
import json
import os
import re
from pathlib import Path

import h5py
import numpy as np

from sensloc import nets

from sensloc._files import atomic_write
from sensloc.data.images import Preprocessing

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load", "read_header", "created_by_text"]

#: Value of the root ``format`` attribute.
FORMAT = "sensloc-weights"
#: Newest format version this module reads and the one it writes.
FORMAT_VERSION = 1

_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_HEADER_KEYS = ("format", "format_version", "architecture", "architecture_options",
                "source_file", "source_sha256", "created_by")


def created_by_text(action=None):
    """Default ``created_by``: ``"sensloc <version>"``, then ``action`` (``"weights convert"``)."""
    from sensloc import __version__
    text = f"sensloc {__version__}"
    return text if action is None else f"{text} {action}"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def save(path, net, preprocessing, class_names, source_file, source_sha256, *,
         architecture_options=None, created_by=None, training=None):
    """Write a network's parameters and metadata to ``path`` (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.h5`` file; replaced atomically if it exists, its folder created if needed.
    net : nets.Network
        An architecture from :data:`nets.ARCHITECTURES` with its parameters loaded.
    preprocessing : Preprocessing
        How the network wants its input.
    class_names : sequence of str
        ``net.num_classes`` names, in class-index order.
    source_file : str
        The file the weights came from (only its name is stored).
    source_sha256 : str
        SHA-256 of that file, 64 hex digits.
    architecture_options : dict, optional
        Builder keyword arguments (JSON-serialisable) such that
        ``nets.build(net.name, **architecture_options)`` has ``net``'s parameter shapes.
        Default ``{"num_classes": net.num_classes}``.
    created_by : str, optional
        Provenance text, e.g. ``"sensloc 0.1.0 weights convert"``.
    training : dict, optional
        For networks trained by sensloc: JSON-serialisable, with at least ``seed`` and
        ``command``; stored as the ``training`` attribute.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If ``net`` or ``preprocessing`` is of the wrong type.
    ValueError
        If the architecture is unknown, the options do not rebuild ``net``'s shapes, a
        parameter holds NaN or infinity, the class names do not match the class count, or
        the SHA-256 is malformed. Nothing is written then.
    """
    if not isinstance(net, nets.Network):
        raise TypeError(f"net must be a nets.Network, got {type(net).__name__}")
    if not isinstance(preprocessing, Preprocessing):
        raise TypeError(f"preprocessing must be a Preprocessing, "
                        f"got {type(preprocessing).__name__}")
    if net.name not in nets.ARCHITECTURES:
        raise ValueError(f"cannot save architecture {net.name!r}: the format stores only "
                         f"{sorted(nets.ARCHITECTURES)}")
    options = {"num_classes": net.num_classes} if architecture_options is None \
        else dict(architecture_options)
    try:
        options_json = json.dumps(options, sort_keys=True)
        rebuilt = nets.build(net.name, **options).parameter_shapes()
    except (TypeError, ValueError) as error:
        raise ValueError(f"architecture_options {options!r} do not build {net.name}: {error}") \
            from error
    if rebuilt != net.parameter_shapes():
        raise ValueError(f"nets.build({net.name!r}, **{options!r}) has other parameter shapes "
                         "than the network being saved; pass the options it was built with")
    names = _check_class_names(class_names, net.num_classes, "class_names")
    if training is not None and not (isinstance(training, dict)
                                     and {"seed", "command"} <= training.keys()):
        raise ValueError(f"training must be a dict with at least 'seed' and 'command', "
                         f"got {training!r}")
    training_json = None if training is None else json.dumps(training, sort_keys=True)
    if not isinstance(source_file, str) or not source_file:
        raise ValueError(f"source_file must be a non-empty file name, got {source_file!r}")
    if not isinstance(source_sha256, str) or not _SHA256_PATTERN.fullmatch(source_sha256):
        raise ValueError(f"source_sha256 must be 64 lowercase hex digits, got {source_sha256!r}")
    params = net.parameters()
    for name, arrays in params.items():
        for key, array in arrays.items():
            if not np.isfinite(array).all():
                raise ValueError(f"{net.name}: {name}/{key} contains NaN or infinity; not saved")

    with atomic_write(path) as temporary:
        with h5py.File(temporary, "w") as file:
            attrs = file.attrs
            attrs["format"] = FORMAT
            attrs["format_version"] = FORMAT_VERSION
            attrs["architecture"] = net.name
            attrs["architecture_options"] = options_json
            for key, value in preprocessing.to_attrs().items():
                attrs[key] = value
            attrs["source_file"] = os.path.basename(source_file)
            attrs["source_sha256"] = source_sha256
            attrs["created_by"] = created_by or created_by_text()
            if training_json is not None:
                attrs["training"] = training_json
            file.create_dataset("class_names", data=names,
                                dtype=h5py.string_dtype(encoding="utf-8"))
            for name, arrays in params.items():
                group = file.create_group(name)  # "fire2/squeeze1x1" creates fire2 first
                for key in ("weight", "bias"):
                    group.create_dataset(key, data=np.asarray(arrays[key], dtype=np.float32))
    return Path(path)


def _check_class_names(class_names, count, where):
    if isinstance(class_names, (str, bytes)):
        raise TypeError(f"{where} must be a sequence of strings, not a single string")
    names = list(class_names)
    if len(names) != count:
        raise ValueError(f"{where} has {len(names)} names but the network has {count} classes")
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{where} must contain only strings")
    return names


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def _open(path):
    """Open ``path`` for reading or raise an error that names it (never h5py's own)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such weight file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        # h5py says "file signature not found" or "truncated file: eof = ...": translate.
        raise ValueError(f"{path}: not a complete HDF5 file (truncated, still being written, "
                         f"or another format) [{error}]") from None


def _text(value):
    """An HDF5 string attribute as ``str`` (h5py returns ``bytes`` for fixed-length strings)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return value if isinstance(value, str) else str(value)


def _header(file, path):
    """Check the identifying root attributes and return them as plain Python values."""
    attrs = file.attrs
    if "format" not in attrs:
        raise ValueError(f"{path}: not a sensloc weight file (no 'format' attribute); convert "
                         "other formats with `sensloc weights convert FILE`")
    if _text(attrs["format"]) != FORMAT:
        raise ValueError(f"{path}: not a sensloc weight file (root attribute format is "
                         f"{_text(attrs['format'])!r} rather than {FORMAT!r})")
    missing = [key for key in _HEADER_KEYS if key not in attrs]
    if missing:
        raise ValueError(f"{path}: incomplete sensloc weight file, missing root attributes "
                         f"{missing}")
    version = attrs["format_version"]
    if not np.issubdtype(np.asarray(version).dtype, np.integer):
        raise ValueError(f"{path}: format_version should be an integer, got {version!r}")
    if int(version) > FORMAT_VERSION or int(version) < 1:
        raise ValueError(f"{path}: format version {int(version)} is not supported (this sensloc "
                         f"reads version {FORMAT_VERSION}); upgrade sensloc")
    architecture = _text(attrs["architecture"])
    if architecture not in nets.ARCHITECTURES:
        raise ValueError(f"{path}: unknown architecture {architecture!r}; this sensloc knows "
                         f"{sorted(nets.ARCHITECTURES)}")
    try:
        options = json.loads(_text(attrs["architecture_options"]))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: architecture_options is not valid JSON ({error})") from None
    if not isinstance(options, dict):
        raise ValueError(f"{path}: architecture_options should be a JSON object, got {options!r}")
    return {
        "format_version": int(version),
        "architecture": architecture,
        "architecture_options": options,
        "source_file": _text(attrs["source_file"]),
        "source_sha256": _text(attrs["source_sha256"]),
        "created_by": _text(attrs["created_by"]),
        "training": json.loads(_text(attrs["training"])) if "training" in attrs else None,
    }


def read_header(path):
    """The root attributes of a weight file, without reading any array.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``format_version`` (int), ``architecture`` (str), ``architecture_options`` (dict),
        ``source_file``, ``source_sha256``, ``created_by`` (str), ``training`` (dict, or
        None for converted networks).

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load`, for the header checks.
    """
    with _open(path) as file:
        try:
            return _header(file, path)
        except OSError as error:
            raise ValueError(f"{path}: not a complete HDF5 file ({error})") from None


def load(path, architecture=None):
    """Read a weight file into a ready-to-use network.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save` (to load an installed network by name, use
        :func:`weights.load`, which resolves names to cache paths first).
    architecture : str, optional
        If given, the architecture the caller expects; a file holding another one is refused.

    Returns
    -------
    nets.Network
        Parameters loaded (float32), with attributes ``preprocessing`` (:class:`Preprocessing`),
        ``class_names`` (list of str, one per class) and ``source`` (dict with ``path``,
        ``file``, ``sha256``, ``created_by``, ``format_version``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Naming the file and the problem: not a (complete) HDF5 file, not a sensloc weight file
        or a newer format version, an unknown architecture or not the one asked for, a missing
        layer or array, an array of the wrong shape or dtype or holding NaN/infinity, bad
        preprocessing attributes, missing class names or the wrong number of them.
    """
    if architecture is not None and architecture not in nets.ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: "
                         f"{sorted(nets.ARCHITECTURES)}")
    with _open(path) as file:
        try:
            return _load_open(file, path, architecture)
        except OSError as error:
            # Metadata can be intact while the data blocks past a truncation point are not.
            raise ValueError(f"{path}: not a complete HDF5 file; reading it failed "
                             f"({error})") from None


def _load_open(file, path, architecture):
    header = _header(file, path)
    held = header["architecture"]
    if architecture is not None and held != architecture:
        raise ValueError(f"{path}: the file holds {held}, not {architecture}")
    try:
        net = nets.build(held, **header["architecture_options"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: architecture_options {header['architecture_options']} do not "
                         f"build {held} ({error})") from None

    params = {}
    for name in net.parameter_shapes():
        if name not in file or not isinstance(file[name], h5py.Group):
            raise ValueError(f"{path}: layer {name!r} of {held} is missing from the file")
        group, arrays = file[name], {}
        for key in ("weight", "bias"):
            if key not in group or not isinstance(group[key], h5py.Dataset):
                raise ValueError(f"{path}: layer {name!r} has no {key!r} dataset")
            dataset = group[key]
            if dataset.dtype.kind != "f":
                raise ValueError(f"{path}: {name}/{key} has dtype {dataset.dtype}, expected "
                                 "float32")
            arrays[key] = dataset[()].astype(np.float32, copy=False)
        params[name] = arrays
    extra = sorted(_layer_groups(file) - set(params))
    if extra:
        raise ValueError(f"{path}: layers {extra[:5]} are not part of {held}")
    try:
        net.load_parameters(params)
    except ValueError as error:  # shape, NaN: nets names the layer, we add the file
        raise ValueError(f"{path}: {error}") from None

    try:
        net.preprocessing = Preprocessing.from_attrs(file.attrs)
    except ValueError as error:
        raise ValueError(f"{path}: bad preprocessing attributes ({error})") from None
    if "class_names" not in file or not isinstance(file["class_names"], h5py.Dataset):
        raise ValueError(f"{path}: the dataset 'class_names' is missing")
    names = file["class_names"]
    if names.ndim != 1 or names.dtype.kind not in "OS":
        raise ValueError(f"{path}: class_names should be a 1-D array of strings, got "
                         f"{names.dtype} {names.shape}")
    net.class_names = [_text(name) for name in names[()]]
    if len(net.class_names) != net.num_classes:
        raise ValueError(f"{path}: {len(net.class_names)} class names for "
                         f"{net.num_classes} classes")
    net.source = {"path": str(Path(path)), "file": header["source_file"],
                  "sha256": header["source_sha256"], "created_by": header["created_by"],
                  "format_version": header["format_version"], "training": header["training"]}
    return net


def _layer_groups(file):
    """Qualified names of all groups that hold a ``weight`` dataset."""
    found = set()

    def visit(name, item):
        if isinstance(item, h5py.Dataset) and name.endswith("/weight"):
            found.add(name[:-len("/weight")])

    file.visititems(visit)
    return found
