"""Decode SqueezeNet 1.0 weights stored in Song Han's Deep Compression format (``.net``).

The file ``compressed_SqueezeNet.net`` (675,763 bytes) of the SqueezeNet-Deep-Compression
repository holds the 26 convolutions of SqueezeNet 1.0 pruned (most 3x3 weights are zero) and
quantised to 256 shared values per layer. Its layout, all little-endian:

1. 26 ``uint32``: ``n_l``, the number of stored weights of each layer, in network order
   (``conv1``; ``fire2`` .. ``fire9`` each ``squeeze1x1, expand1x1, expand3x3``;
   ``conv_final``).
2. For each layer ``l``, one after the other:

   - the codebook: 256 ``float32`` (entry 0 is 0.0 in the published file);
   - the biases: ``O`` ``float32``, one per output channel;
   - the codes: ``n_l`` ``uint8``, each an index into the codebook;
   - the gaps: ``ceil(n_l / 2)`` bytes of 4-bit numbers, low nibble first. Gap ``g_k`` is
     the number of weights skipped (left at code 0) before stored weight ``k``, so stored
     weight ``k`` sits at flat position ``p_k = sum_{j<=k} (g_j + 1) - 1`` of the layer's
     OIHW weight array (``p = cumsum(g + 1) - 1``).

   A run of more than 15 zeros cannot be one gap: the encoder then stores a filler entry with
   gap 15 and code 0. Every position that is not stored takes code 0 too, so the weight array
   is ``codebook[codes]`` with ``codes`` zero except at the ``p_k``, exactly as the authors'
   ``decode.py`` rebuilds it.

A correct decoder consumes exactly all bytes of the file, which is checked. Shapes come from
:func:`nets.build` ``("squeezenet1_0")``, so the decoder and the network cannot disagree.
"""
from pathlib import Path

import numpy as np

from sensloc import nets

__all__ = ["decode", "expected_size", "CODEBOOK_SIZE"]

#: Shared values per layer (8-bit codes).
CODEBOOK_SIZE = 256
_COUNT = np.dtype("<u4")
_FLOAT = np.dtype("<f4")


def _layer_shapes():
    """``[(name, weight shape, bias length)]`` of SqueezeNet 1.0 in network (= file) order."""
    shapes = nets.build("squeezenet1_0").parameter_shapes()
    return [(name, s["weight"], s["bias"][0]) for name, s in shapes.items()]


def _layer_bytes(stored, bias_length):
    """Bytes of one layer's record: codebook, biases, codes, packed gaps."""
    return (CODEBOOK_SIZE * _FLOAT.itemsize + bias_length * _FLOAT.itemsize + stored
            + (stored + 1) // 2)


def expected_size(counts):
    """The file size that the 26 stored-weight counts imply (header included).

    Parameters
    ----------
    counts : sequence of int
        ``n_l`` for each layer, as in the file header.

    Returns
    -------
    int
    """
    layers = _layer_shapes()
    return len(layers) * _COUNT.itemsize + sum(
        _layer_bytes(int(n), bias) for n, (_, _, bias) in zip(counts, layers))


def decode(path):
    """Decode a Deep Compression SqueezeNet 1.0 file into ``nets`` parameters.

    Parameters
    ----------
    path : str or os.PathLike
        ``compressed_SqueezeNet.net``.

    Returns
    -------
    dict
        ``{layer name: {"weight": float32 (O, C, KH, KW), "bias": float32 (O,)}}`` for
        :meth:`nets.Network.load_parameters` of ``nets.build("squeezenet1_0")``.

    Raises
    ------
    ValueError
        Naming the file: shorter or longer than its header implies (with both byte counts),
        a layer storing more weights than it has, or gaps that run past the end of a layer.
    """
    path = Path(path)
    raw = path.read_bytes()
    layers = _layer_shapes()
    header = len(layers) * _COUNT.itemsize
    if len(raw) < header:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for the {len(layers)}-layer "
                         f"header of a Deep Compression SqueezeNet file ({header} bytes)")
    counts = np.frombuffer(raw, _COUNT, count=len(layers))
    for n, (name, weight_shape, _) in zip(counts, layers):
        if n > np.prod(weight_shape):
            raise ValueError(f"{path}: the header says layer {name} stores {n} weights, but it "
                             f"has only {int(np.prod(weight_shape))}: not a Deep Compression "
                             "SqueezeNet 1.0 file")
    size = expected_size(counts)
    if size != len(raw):
        what = "truncated" if len(raw) < size else "has extra bytes"
        raise ValueError(f"{path}: the file is {len(raw)} bytes but its header implies {size}; "
                         f"it is {what} or not a Deep Compression SqueezeNet 1.0 file")

    params, offset = {}, header
    for n, (name, weight_shape, bias_length) in zip(counts, layers):
        n = int(n)
        codebook = np.frombuffer(raw, _FLOAT, CODEBOOK_SIZE, offset)
        offset += codebook.nbytes
        bias = np.frombuffer(raw, _FLOAT, bias_length, offset)
        offset += bias.nbytes
        codes = np.frombuffer(raw, np.uint8, n, offset)
        offset += n
        packed = np.frombuffer(raw, np.uint8, (n + 1) // 2, offset)
        offset += packed.size
        gaps = np.empty(2 * packed.size, np.int64)
        gaps[0::2] = packed & 0x0F  # low nibble first
        gaps[1::2] = packed >> 4
        positions = np.cumsum(gaps[:n] + 1) - 1
        total = int(np.prod(weight_shape))
        if n and positions[-1] >= total:
            raise ValueError(f"{path}: layer {name}: the gaps place a weight at position "
                             f"{positions[-1]}, past its {total} weights")
        full_codes = np.zeros(total, np.uint8)
        full_codes[positions] = codes
        params[name] = {"weight": codebook[full_codes].astype(np.float32).reshape(weight_shape),
                        "bias": bias.astype(np.float32)}
    assert offset == len(raw)  # guaranteed by the size check above
    return params
