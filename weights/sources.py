"""Known pretrained weight files: where to download them, how to check them, and :func:`fetch`.

Every entry names the file as its publisher distributes it, the URL the publisher's own code
downloads it from, and the strongest checksum that can be stated for it:

* **Deep Compression SqueezeNet**: full SHA-256, computed from the file in the authors'
  repository (675,763 bytes).
* **torchvision VGG16 and VGG19**: full SHA-256. torchvision itself publishes only the first
  8 hex digits (in the file name, e.g. ``vgg16-397923af.pth``, checked by
  ``torch.hub.load_state_dict_from_url(check_hash=True)``); the full digests below are the
  ones stated by several independent public projects that pin these files, and each begins
  with torchvision's 8 digits.
* **torchvision VGG11 and VGG13**: no full SHA-256 could be found in a public source, so only
  torchvision's official 8-digit prefix is checked (as torchvision itself does). That is a
  32-bit check: it catches corruption and truncation, not a deliberately forged file.
* **Keras VGG16 and VGG19**: Keras publishes an MD5 (``file_hash`` in
  ``keras.applications.vgg16``); no SHA-256 for these files could be found in a public source,
  so the official MD5 is what is verified. MD5 catches corruption, but collisions can be forged.

Whatever was verified, the SHA-256 of the actual source bytes is recorded in the converted file
(``source_sha256``).
"""
from dataclasses import dataclass

from sensloc import nets

from sensloc.weights import format as weight_format
from sensloc.weights.cache import downloads_dir, installed_path
from sensloc.weights.convert import convert
from sensloc.weights.download import download

__all__ = ["Source", "SOURCES", "DEFAULT_SOURCE", "CONVERT_ONLY", "get_source", "fetch"]


@dataclass(frozen=True)
class Source:
    """One downloadable weight file.

    Attributes
    ----------
    architecture : str
        The :data:`nets.ARCHITECTURES` name it converts to.
    name : str
        Publisher: ``"keras"``, ``"torchvision"`` or ``"deep-compression"``.
    filename, url : str
    sha256 : str or None
        Full SHA-256 (64 hex digits), or a shorter official prefix (see the module docstring).
    md5 : str or None
        Official MD5 where that is all the publisher states.
    size : int or None
        Bytes, where known.
    """
    architecture: str
    name: str
    filename: str
    url: str
    sha256: str = None
    md5: str = None
    size: int = None

    @property
    def checksum(self):
        """What is verified, in words (for messages and listings)."""
        if self.sha256 and len(self.sha256) == 64:
            return f"SHA-256 {self.sha256}"
        if self.sha256:
            return f"SHA-256 prefix {self.sha256} (official; no full digest published)"
        return f"MD5 {self.md5} (official; no SHA-256 published)"


_TORCHVISION = "https://download.pytorch.org/models/"
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"

#: ``{(architecture, source name): Source}``.
SOURCES = {(s.architecture, s.name): s for s in [
    Source("squeezenet1_0", "deep-compression", "compressed_SqueezeNet.net",
           "https://raw.githubusercontent.com/songhan/SqueezeNet-Deep-Compression/master/"
           "compressed_SqueezeNet.net",
           sha256="e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261",
           size=675_763),
    Source("vgg16", "torchvision", "vgg16-397923af.pth", _TORCHVISION + "vgg16-397923af.pth",
           sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
           size=553_433_881),
    Source("vgg19", "torchvision", "vgg19-dcbb9e9d.pth", _TORCHVISION + "vgg19-dcbb9e9d.pth",
           sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
           size=574_673_361),
    # Prefix only: torchvision's official 8 digits (module docstring).
    Source("vgg11", "torchvision", "vgg11-8a719046.pth", _TORCHVISION + "vgg11-8a719046.pth",
           sha256="8a719046"),
    Source("vgg13", "torchvision", "vgg13-19584684.pth", _TORCHVISION + "vgg13-19584684.pth",
           sha256="19584684"),
    # MD5 only: Keras's official file_hash (module docstring).
    Source("vgg16", "keras", "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
           _KERAS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
           md5="64373286793e3c8b2b4e3219cbf3544b"),
    Source("vgg19", "keras", "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
           _KERAS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
           md5="cbe5617147190e668d6c5d5026f83318"),
]}

#: Source used by :func:`fetch` when none is named: the best-verified one per architecture.
DEFAULT_SOURCE = {"vgg11": "torchvision", "vgg13": "torchvision", "vgg16": "torchvision",
                  "vgg19": "torchvision", "squeezenet1_0": "deep-compression"}

#: Architectures with no download here, and how to install them: TensorFlow publishes the
#: MobileNetV2 TFLite files inside archives without a checksum, so sensloc converts a file the
#: user has (``sensloc weights convert``) rather than download one it cannot verify.
CONVERT_ONLY = {"mobilenet_v2": "convert TensorFlow's quantized TFLite file: sensloc weights "
                                "convert mobilenet_v2_1.0_224_quant.tflite (or "
                                "tf2_mobilenet_v2_1.0_224_ptq.tflite)"}


def get_source(architecture, name=None):
    """The :class:`Source` for ``architecture`` from publisher ``name`` (default: the default).

    Raises
    ------
    ValueError
        Listing what exists, if there is no such source.
    """
    if architecture not in nets.ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: "
                         f"{sorted(nets.ARCHITECTURES)}")
    if architecture in CONVERT_ONLY and not any(a == architecture for a, _ in SOURCES):
        raise ValueError(f"{architecture} cannot be downloaded by sensloc; "
                         f"{CONVERT_ONLY[architecture]}")
    name = DEFAULT_SOURCE.get(architecture) if name is None else name
    if (architecture, name) not in SOURCES:
        known = sorted(n for a, n in SOURCES if a == architecture)
        raise ValueError(f"no source {name!r} for {architecture}; known: {known}")
    return SOURCES[(architecture, name)]


def fetch(architecture, source=None, cache_dir=None, *, keep_download=False, progress=None,
          timeout=60.0, connect_timeout=10.0):
    """Download, verify, convert and install pretrained weights.

    Parameters
    ----------
    architecture : str
        E.g. ``"vgg16"``, ``"squeezenet1_0"``.
    source : str, optional
        Publisher (``"torchvision"``, ``"keras"``, ``"deep-compression"``); default
        :data:`DEFAULT_SOURCE`.
    cache_dir : str or os.PathLike, optional
        Cache folder (see :mod:`weights.cache`).
    keep_download : bool
        Keep the downloaded source file in ``<cache>/downloads`` (it is deleted by default:
        VGG files are over 500 MB and the converted copy has everything).
    progress : bool, optional
        Progress bar (default: when standard error is a terminal).
    timeout, connect_timeout : float
        See :func:`weights.download.download`.

    Returns
    -------
    pathlib.Path
        The installed file, ``<cache>/weights/<architecture>.h5``.

    Raises
    ------
    DownloadError, ChecksumError
        See :func:`weights.download.download` (offline: says how to convert a copy instead).
    ValueError
        Unknown architecture or source.
    """
    entry = get_source(architecture, source)
    target = downloads_dir(cache_dir) / entry.filename
    download(entry.url, target, sha256=entry.sha256, md5=entry.md5, timeout=timeout,
             connect_timeout=connect_timeout, progress=progress)
    installed = installed_path(architecture, cache_dir)
    try:
        path = convert(target, out=installed)
        held = weight_format.read_header(path)["architecture"]
        if held != architecture:  # cannot happen with a verified file; checked all the same
            path.unlink()
            raise ValueError(f"{entry.filename} converted to {held}, not {architecture}")
    finally:
        if not keep_download:
            target.unlink(missing_ok=True)
    return path
