"""Pretrained weights: the project's HDF5 format, converters, downloads and class names.

>>> from sensloc import weights
>>> weights.fetch("squeezenet1_0")              # download, verify SHA-256, convert, install
>>> net = weights.load("squeezenet1_0")          # nets.Network with .preprocessing, .class_names
>>> weights.convert("vgg16_weights_tf_dim_ordering_tf_kernels.h5")   # a file you already have

Modules: :mod:`~weights.format` (the file format, documented there), :mod:`~weights.cache`
(where installed files live), :mod:`~weights.download`, :mod:`~weights.sources` (known files
and their checksums), :mod:`~weights.convert` with the readers :mod:`~weights.keras_h5`,
:mod:`~weights.torch_pth`, :mod:`~weights.deep_compression` and :mod:`~weights.tflite`
(MobileNetV2), and :mod:`~weights.classes`.
Images and their preprocessing live in :mod:`sensloc.data.images`; the ``sensloc weights
list|fetch|convert`` commands in :mod:`sensloc.cli`.
"""
from sensloc.weights.cache import (default_cache_dir, installed, installed_path, packaged_path,
                                   resolve)
from sensloc.weights.classes import imagenet_class_names, imagenet_classes
from sensloc.weights.convert import FORMATS, convert, detect_format
from sensloc.weights.download import ChecksumError, DownloadError, download
from sensloc.weights.loading import load
from sensloc.weights.format import FORMAT, FORMAT_VERSION, read_header, save
from sensloc.weights.sources import DEFAULT_SOURCE, SOURCES, Source, fetch, get_source
from sensloc.weights.torch_pth import UnsafePickleError, load_state_dict

__all__ = [
    # format and cache
    "FORMAT", "FORMAT_VERSION", "save", "load", "read_header", "default_cache_dir", "installed",
    "installed_path", "packaged_path", "resolve",
    # getting weights
    "convert", "detect_format", "FORMATS", "fetch", "download", "Source", "SOURCES",
    "DEFAULT_SOURCE", "get_source", "DownloadError", "ChecksumError", "load_state_dict",
    "UnsafePickleError",
    # class names
    "imagenet_classes", "imagenet_class_names",
]
