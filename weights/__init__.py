"""Pretrained weights: the project's HDF5 format, converters, downloads, images and class names.

>>> import weights
>>> weights.fetch("squeezenet1_0")              # download, verify SHA-256, convert, install
>>> net = weights.load("squeezenet1_0")          # nets.Network with .preprocessing, .class_names
>>> x = weights.load_batch(["cat.jpg"], net.preprocessing)   # (1, 3, 227, 227) float32
>>> weights.convert("vgg16_weights_tf_dim_ordering_tf_kernels.h5")   # a file you already have

Modules: :mod:`~weights.format` (the file format, documented there), :mod:`~weights.cache`
(where installed files live), :mod:`~weights.download`, :mod:`~weights.sources` (known files
and their checksums), :mod:`~weights.convert` with the readers :mod:`~weights.keras_h5`,
:mod:`~weights.torch_pth` and :mod:`~weights.deep_compression`, :mod:`~weights.images` and
:mod:`~weights.classes`. The ``sensloc weights list|fetch|convert`` commands live in
:mod:`localize.cli`.
"""
from .cache import default_cache_dir, installed, installed_path, load, packaged_path, resolve
from .classes import imagenet_class_names, imagenet_classes
from .convert import FORMATS, convert, detect_format
from .download import ChecksumError, DownloadError, download
from .format import FORMAT, FORMAT_VERSION, read_header, save
from .images import (CAFFE_SQUEEZENET, CAFFE_VGG16, TORCHVISION, ImageError, Preprocessing,
                     load_batch, load_image, resize_geometry, resize_image)
from .sources import DEFAULT_SOURCE, SOURCES, Source, fetch, get_source
from .torch_pth import UnsafePickleError, load_state_dict

__all__ = [
    # format and cache
    "FORMAT", "FORMAT_VERSION", "save", "load", "read_header", "default_cache_dir", "installed",
    "installed_path", "packaged_path", "resolve",
    # getting weights
    "convert", "detect_format", "FORMATS", "fetch", "download", "Source", "SOURCES",
    "DEFAULT_SOURCE", "get_source", "DownloadError", "ChecksumError", "load_state_dict",
    "UnsafePickleError",
    # images and classes
    "Preprocessing", "load_image", "load_batch", "resize_image", "resize_geometry", "ImageError", "CAFFE_VGG16",
    "TORCHVISION", "CAFFE_SQUEEZENET", "imagenet_classes", "imagenet_class_names",
]
