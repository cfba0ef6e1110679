"""Read Keras VGG16/VGG19 ImageNet weights (``vgg16_weights_tf_dim_ordering_tf_kernels.h5``).

Keras's legacy HDF5 weight layout (``model.save_weights`` before Keras 3, and the files that
``keras.applications.VGG16`` downloads):

* root attribute ``layer_names``: every layer in order, weightless ones included
  (``input_1``, ``block1_conv1``, ..., ``block1_pool``, ..., ``flatten``, ``fc1``, ``fc2``,
  ``predictions``);
* one group per layer with attribute ``weight_names``, the paths (relative to the group) of its
  arrays in the order Keras creates them, kernel first, bias second. The 2016 ImageNet files
  name them ``block1_conv1_W_1:0`` and ``block1_conv1_b_1:0``; files written by later Keras 2
  versions say ``block1_conv1/kernel:0`` and ``block1_conv1/bias:0`` (a nested group). Reading
  the names from ``weight_names``, as Keras itself does, handles both.
* A whole-model file (``model.save``) has the same layout inside a group ``model_weights``.

Arrays are in TensorFlow's layout ("tf_dim_ordering_tf_kernels"):

* convolution kernel ``(KH, KW, C_in, C_out)`` (HWIO; cross-correlation, like PyTorch, so no
  flipping) -> ``nets`` ``(C_out, C_in, KH, KW)`` by ``transpose(3, 2, 0, 1)``;
* dense kernel ``(D_in, D_out)`` -> ``(D_out, D_in)`` by transposing;
* ``fc1`` reads the flattened output of the last pool, which Keras flattens in ``(H, W, C)``
  order and ``nets`` in ``(C, H, W)`` order; so its rows are permuted:
  ``W[(h, w, c), o]`` -> ``W'[o, (c, h, w)]``.

Layer names map to ``nets``: ``block{b}_conv{i}`` -> ``conv{b}_{i}``, ``fc1`` -> ``fc6``,
``fc2`` -> ``fc7``, ``predictions`` -> ``fc8``. The architecture (VGG16 or VGG19) is recognised
from the number of convolutions in each block.
"""
import re
from pathlib import Path

import h5py
import numpy as np

from sensloc.nets import CONFIGURATIONS

__all__ = ["read_vgg", "is_keras_weights", "read_layer_arrays"]

_CONV = re.compile(r"block(\d+)_conv(\d+)")
_DENSE = {"fc1": "fc6", "fc2": "fc7", "predictions": "fc8"}


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _weights_root(file):
    """The group holding ``layer_names``: the file itself or its ``model_weights`` group."""
    if "layer_names" in file.attrs:
        return file
    if "model_weights" in file and "layer_names" in file["model_weights"].attrs:
        return file["model_weights"]
    return None


def is_keras_weights(file):
    """Whether an open ``h5py.File`` has Keras's legacy weight layout."""
    return _weights_root(file) is not None


def read_layer_arrays(file, path):
    """Every layer's arrays in the order of ``weight_names``, for layers that have any.

    Parameters
    ----------
    file : h5py.File
        An open Keras weight file.
    path : str or os.PathLike
        Its name, for error messages.

    Returns
    -------
    dict
        ``{keras layer name: [array, ...]}`` in ``layer_names`` order (float32 arrays).
    """
    root = _weights_root(file)
    if root is None:
        hint = (" (this looks like a Keras 3 '.weights.h5' file, which is not supported)"
                if "layers" in file or "vars" in file else "")
        raise ValueError(f"{path}: not a Keras weight file: no 'layer_names' attribute{hint}")
    layers = {}
    for layer in (_text(name) for name in root.attrs["layer_names"]):
        if layer not in root:
            raise ValueError(f"{path}: layer {layer!r} is listed in layer_names but has no group")
        group = root[layer]
        names = [_text(name) for name in np.atleast_1d(group.attrs.get("weight_names", []))]
        if not names:
            continue
        arrays = []
        for name in names:
            if name not in group or not isinstance(group[name], h5py.Dataset):
                raise ValueError(f"{path}: layer {layer!r} lists weight {name!r}, which is "
                                 "missing")
            # [()] then astype: h5py converting on read (asarray with dtype) is far slower.
            arrays.append(group[name][()].astype(np.float32, copy=False))
        layers[layer] = arrays
    return layers


def _kernel_and_bias(arrays, layer, kernel_ndim, path):
    """The (kernel, bias) pair of one layer, checked."""
    if len(arrays) != 2 or arrays[0].ndim != kernel_ndim or arrays[1].ndim != 1:
        shapes = [a.shape for a in arrays]
        raise ValueError(f"{path}: layer {layer!r} should hold a {kernel_ndim}-D kernel and a "
                         f"bias, found arrays of shapes {shapes}")
    kernel, bias = arrays
    if kernel.shape[-1] != bias.shape[0]:
        raise ValueError(f"{path}: layer {layer!r}: kernel {kernel.shape} does not match bias "
                         f"{bias.shape} (expected Keras's channels-last kernels)")
    return kernel, bias


def _architecture(block_sizes, path):
    """The VGG configuration whose blocks have these numbers of convolutions."""
    for name, configuration in CONFIGURATIONS.items():
        sizes, count = [], 0
        for item in configuration:
            if item == "M":
                sizes.append(count)
                count = 0
            else:
                count += 1
        if sizes == block_sizes:
            return name
    raise ValueError(f"{path}: convolutions per block {block_sizes} match no VGG configuration "
                     f"({sorted(CONFIGURATIONS)})")


def read_vgg(path):
    """Read a Keras VGG weight file into ``nets`` parameters.

    Parameters
    ----------
    path : str or os.PathLike
        E.g. ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``.

    Returns
    -------
    architecture : str
        ``"vgg16"`` or ``"vgg19"`` (any configuration of :data:`nets.CONFIGURATIONS`).
    params : dict
        ``{"conv1_1": {"weight": (O, C, 3, 3), "bias": (O,)}, ..., "fc8": {...}}``, float32,
        in the layouts ``nets`` uses.

    Raises
    ------
    ValueError
        Naming the file: not HDF5, not Keras's layout, a file without the classifier
        (``_notop``), Theano-ordered kernels, or unexpected layers or shapes.
    """
    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a complete HDF5 file ({error})") from None
    with file:
        try:
            layers = read_layer_arrays(file, path)
        except OSError as error:
            raise ValueError(f"{path}: reading failed; the file is damaged or truncated "
                             f"({error})") from None

    convs, unexpected = {}, []
    for layer in layers:
        match = _CONV.fullmatch(layer)
        if match:
            convs[(int(match[1]), int(match[2]))] = layer
        elif layer not in _DENSE:
            unexpected.append(layer)
    if unexpected:
        raise ValueError(f"{path}: layers {unexpected} are not part of a Keras VGG")
    missing_dense = [layer for layer in _DENSE if layer not in layers]
    if missing_dense == list(_DENSE):
        raise ValueError(f"{path}: no fully connected layers (fc1, fc2, predictions): this is a "
                         "'_notop' file; sensloc needs the full classifier, e.g. "
                         "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    if missing_dense:
        raise ValueError(f"{path}: fully connected layers {missing_dense} are missing")
    blocks = sorted({block for block, _ in convs})
    if blocks != list(range(1, len(blocks) + 1)):
        raise ValueError(f"{path}: convolution blocks {blocks} are not numbered 1, 2, ...")
    block_sizes = []
    for block in blocks:
        indices = sorted(i for b, i in convs if b == block)
        if indices != list(range(1, len(indices) + 1)):
            raise ValueError(f"{path}: block {block} has convolutions {indices}, not 1, 2, ...")
        block_sizes.append(len(indices))
    architecture = _architecture(block_sizes, path)

    params, channels = {}, 3
    for (block, index), layer in sorted(convs.items()):
        kernel, bias = _kernel_and_bias(layers.pop(layer), layer, 4, path)
        if kernel.shape[:3] != (3, 3, channels):
            raise ValueError(
                f"{path}: {layer} kernel has shape {kernel.shape}, expected (3, 3, {channels}, "
                f"{bias.shape[0]}) (height, width, in, out); Theano-ordered files "
                "('th_dim_ordering_th_kernels') are not supported")
        params[f"conv{block}_{index}"] = {
            "weight": np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), "bias": bias}
        channels = kernel.shape[3]

    # pop: free each Keras array once converted (fc1 alone is 411 MB for VGG16).
    kernel, bias = _kernel_and_bias(layers.pop("fc1"), "fc1", 2, path)
    side = int(round((kernel.shape[0] / channels) ** 0.5))
    if side * side * channels != kernel.shape[0]:
        raise ValueError(f"{path}: fc1 has {kernel.shape[0]} inputs, not a square map of "
                         f"{channels} channels")
    # Rows are (h, w, c) in Keras's flatten order; nets flattens (c, h, w).
    weight = kernel.reshape(side, side, channels, -1).transpose(3, 2, 0, 1)
    params["fc6"] = {"weight": np.ascontiguousarray(weight).reshape(weight.shape[0], -1),
                     "bias": bias}
    del kernel, weight
    for layer in ("fc2", "predictions"):
        kernel, bias = _kernel_and_bias(layers.pop(layer), layer, 2, path)
        params[_DENSE[layer]] = {"weight": np.ascontiguousarray(kernel.T), "bias": bias}
    return architecture, params
