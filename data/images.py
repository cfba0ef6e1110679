"""Loading photos and turning them into network inputs.

Every image in the project enters through :func:`load_image`, which gives a ``uint8`` array of
shape ``(H, W, 3)`` in RGB order whatever the file held (grey, palette, alpha, CMYK, 16-bit,
float, rotated by an EXIF tag). :class:`Preprocessing` then records how one particular network
wants its input (size, resize protocol, channel order, scale, mean, std) and turns such an array
into a ``float32`` array of shape ``(3, H, W)``, the layout used throughout the library.

Reading a file (:func:`load_image`, :func:`image_size`: every Pillow mode to RGB, the size
limit, corrupt files named) lives in ``sensloc.data._decode``; this module imports it and holds
what the networks need of a photo: the resize geometry, the resize and :class:`Preprocessing`.

Two resize protocols are used by the pretrained networks (:func:`resize_image`):

``"squash"``
    resize straight to the input size; the aspect ratio is not kept (Caffe SqueezeNet).
``"crop"``
    scale, keeping the aspect ratio, so that the shorter side is ``round(S / 0.875)`` with
    ``S = max(H, W)`` of the input size, then cut out the centre ``H x W`` (the usual
    256 -> 224 protocol of Keras and torchvision evaluations).

Large files. An image of more than :data:`MAX_PIXELS` pixels is refused with one line (an image
that size is more likely a decompression bomb than a photo). Below it, :func:`load_resized` (the
loader behind :func:`load_batch` and the command line) decodes at the size the network needs: a
JPEG at 1/2, 1/4 or 1/8 scale while it stays :data:`REDUCING_GAP` times larger than the
resized photo (``Image.draft``), any other file at full size and then shrunk by an integer
factor on the same rule (``Image.reduce``, box averaging), before colours and alpha are
converted in ``uint8``. Peak memory is then about 8 bytes per pixel of a non-JPEG file (at most
about 0.5 GB at the limit) and a few times the network input for a JPEG.
"""
import os
from dataclasses import dataclass
from numbers import Real

import numpy as np
from PIL import Image

from sensloc.data._decode import MAX_PIXELS, ImageError, decode, image_size, load_image, to_rgb

__all__ = [
    "ImageError",
    "Preprocessing",
    "CAFFE_VGG16",
    "TORCHVISION",
    "CAFFE_SQUEEZENET",
    "CROP_FRACTION",
    "MAX_PIXELS",
    "load_image",
    "load_resized",
    "image_size",
    "resize_image",
    "resize_geometry",
    "load_batch",
]

#: A file is shrunk before resizing only while it stays this many times larger than the
#: resized photo on both sides, so the final bilinear resize still sees every pixel's share
#: (Pillow's ``reducing_gap``; at 3 the result is practically that of a full-size resize).
REDUCING_GAP = 3

#: Fraction of the resized shorter side kept by the ``"crop"`` protocol (224 / 256).
CROP_FRACTION = 0.875

_CHANNEL_ORDERS = ("RGB", "BGR")
_RESIZE_MODES = ("squash", "crop")
_ATTR_KEYS = ("input_size", "channel_order", "pixel_scale", "mean", "std", "resize")


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------

def _check_rgb_uint8(image, name):
    """Return ``image`` if it is a ``uint8 (H, W, 3)`` array with H, W >= 1, else raise."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 with values 0..255 (as load_image returns), "
                        f"got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"{name} must have shape (H, W, 3), got {image.shape}")
    return image


def _positive_int_pair(value, name):
    """``value`` as a tuple of two positive Python ints, or raise naming ``name``."""
    array = np.asarray(value)
    if array.shape != (2,) or not np.issubdtype(array.dtype, np.integer) or (array <= 0).any():
        raise ValueError(f"{name} must be two positive integers (H, W), got {value!r}")
    return tuple(int(v) for v in array)


def _float_triple(value, name):
    """``value`` as a tuple of three finite Python floats, or raise naming ``name``."""
    array = np.asarray(value)
    if array.shape != (3,) or not np.issubdtype(array.dtype, np.number) \
            or np.iscomplexobj(array) or not np.isfinite(array).all():
        raise ValueError(f"{name} must be three finite numbers (one per channel), got {value!r}")
    return tuple(float(v) for v in array)

# --------------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------------

def resize_image(image, size_hw, mode):
    """Resize an RGB image to a network's input size.

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8``, shape ``(h, w, 3)``, as returned by :func:`load_image`.
    size_hw : tuple of int
        Output ``(H, W)``.
    mode : {"squash", "crop"}
        ``"squash"``: resize straight to ``(H, W)``, aspect ratio not kept.
        ``"crop"``: scale the shorter side of the image to ``round(max(H, W) / 0.875)`` and the
        longer side in proportion (truncated to an integer, as torchvision's ``Resize`` does),
        then cut out the centre ``(H, W)`` (offset ``round((new - H) / 2)``, as torchvision's
        ``CenterCrop``). For 224 x 224 this is the usual "resize to 256, centre crop 224".

    Returns
    -------
    numpy.ndarray
        ``uint8``, shape ``(H, W, 3)``.

    Notes
    -----
    Resampling is Pillow's bilinear filter. When reducing, Pillow widens the filter by the
    reduction factor so that every source pixel contributes (antialiasing; true of
    ``Image.resize`` since Pillow 2.7), unlike point-sampled bilinear interpolation, which
    aliases badly on large reductions.
    """
    image = _check_rgb_uint8(image, "image")
    height, width = _positive_int_pair(size_hw, "size_hw")
    (new_h, new_w), (top, left) = resize_geometry(image.shape[:2], (height, width), mode)
    scaled = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    return np.array(scaled[top:top + height, left:left + width])


def resize_geometry(image_hw, size_hw, mode):
    """Where :func:`resize_image` puts a photo: the scaled size and the crop offset.

    A point ``(x, y)`` of the photo lands at ``(x * new_w / w - left, y * new_h / h - top)`` of
    the network input; boxes move between the two with the same affine map.

    Parameters
    ----------
    image_hw : (int, int)
        The photo's ``(h, w)``.
    size_hw : (int, int)
        The network input's ``(H, W)``.
    mode : {"squash", "crop"}

    Returns
    -------
    (new_h, new_w), (top, left) : tuples of int
        ``"squash"`` gives ``(H, W), (0, 0)``.
    """
    old_h, old_w = _positive_int_pair(image_hw, "image_hw")
    height, width = _positive_int_pair(size_hw, "size_hw")
    if mode == "squash":
        return (height, width), (0, 0)
    if mode != "crop":
        raise ValueError(f"resize mode must be one of {_RESIZE_MODES}, got {mode!r}")
    short_side = round(max(height, width) / CROP_FRACTION)
    if old_h <= old_w:
        new_h, new_w = short_side, int(short_side * old_w / old_h)
    else:
        new_h, new_w = int(short_side * old_h / old_w), short_side
    return (new_h, new_w), (int(round((new_h - height) / 2)), int(round((new_w - width) / 2)))


def load_resized(path, size_hw, mode):
    """:func:`resize_image` of :func:`load_image`, decoding only the pixels needed.

    Parameters
    ----------
    path : str or os.PathLike
    size_hw : (int, int)
        The network input's ``(H, W)``.
    mode : {"squash", "crop"}

    Returns
    -------
    numpy.ndarray
        ``uint8``, shape ``(H, W, 3)``. The geometry is that of the full-size photo
        (:func:`resize_geometry` of its ``(h, w)``), so boxes map as for ``resize_image``.
        A photo at least ``2 * REDUCING_GAP`` times larger than the resized one is decoded
        shrunk (see the module notes), otherwise the result equals
        ``resize_image(load_image(path), size_hw, mode)`` exactly.
    """
    height, width = _positive_int_pair(size_hw, "size_hw")
    full_hw = image_size(path)[::-1]
    (new_h, new_w), (top, left) = resize_geometry(full_hw, (height, width), mode)
    image, _ = decode(path, REDUCING_GAP * max(new_h, new_w))
    rgb = to_rgb(image, path)
    scaled = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
    return np.array(scaled[top:top + height, left:left + width])


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preprocessing:
    """How one network wants its input, and the transform to and from it.

    For a ``uint8`` RGB pixel ``p`` (values 0..255) the network sees, per channel ``c`` of
    ``channel_order``::

        x_c = (p_c * pixel_scale - mean_c) / std_c

    Attributes
    ----------
    input_size : tuple of int
        ``(H, W)`` the network expects.
    channel_order : {"RGB", "BGR"}
        Order of the 3 channels of the network input (Caffe-trained nets use BGR).
    pixel_scale : float
        Multiplies the 0..255 pixel values first: 1.0 for Caffe/Keras nets, 1/255 for
        torchvision nets.
    mean, std : tuple of float
        Three values each, in ``channel_order`` and in scaled units (after ``pixel_scale``).
        ``std`` is all ones for Caffe-style nets.
    resize : {"squash", "crop"}
        Resize protocol, see :func:`resize_image`.

    Values are checked and normalised (to tuples of ``int``/``float`` and ``str``) on
    construction, so arrays read back from HDF5 attributes are accepted.
    """

    input_size: tuple
    channel_order: str
    pixel_scale: float
    mean: tuple
    std: tuple
    resize: str

    def __post_init__(self):
        # frozen=True forbids normal assignment; object.__setattr__ is the documented way out.
        set_field = object.__setattr__
        set_field(self, "input_size", _positive_int_pair(self.input_size, "input_size"))
        if not (isinstance(self.channel_order, str) and self.channel_order in _CHANNEL_ORDERS):
            raise ValueError(f"channel_order must be one of {_CHANNEL_ORDERS}, "
                             f"got {self.channel_order!r}")
        set_field(self, "channel_order", str(self.channel_order))
        scale = self.pixel_scale
        if isinstance(scale, bool) or not isinstance(scale, Real) or not 0 < scale < np.inf:
            raise ValueError(f"pixel_scale must be a positive finite number, got {scale!r}")
        set_field(self, "pixel_scale", float(scale))
        set_field(self, "mean", _float_triple(self.mean, "mean"))
        std = _float_triple(self.std, "std")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}")
        set_field(self, "std", std)
        if not (isinstance(self.resize, str) and self.resize in _RESIZE_MODES):
            raise ValueError(f"resize must be one of {_RESIZE_MODES}, got {self.resize!r}")
        set_field(self, "resize", str(self.resize))

    def to_attrs(self):
        """The fields as plain values ready to be stored as HDF5 attributes.

        Returns
        -------
        dict
            Keys ``input_size`` (``int64`` array ``(2,)``), ``channel_order`` (str),
            ``pixel_scale`` (float), ``mean`` and ``std`` (``float64`` arrays ``(3,)``),
            ``resize`` (str).
        """
        return {
            "input_size": np.array(self.input_size, dtype=np.int64),
            "channel_order": self.channel_order,
            "pixel_scale": self.pixel_scale,
            "mean": np.array(self.mean, dtype=np.float64),
            "std": np.array(self.std, dtype=np.float64),
            "resize": self.resize,
        }

    @classmethod
    def from_attrs(cls, attrs):
        """Rebuild from a mapping written by :meth:`to_attrs` (e.g. an ``h5py`` ``.attrs``).

        Keys other than the six fields are ignored, so a whole attribute set can be passed.
        Byte strings (fixed-length HDF5 strings) are decoded as UTF-8.

        Raises
        ------
        ValueError
            If a key is missing or a value is invalid.
        """
        missing = [key for key in _ATTR_KEYS if key not in attrs]
        if missing:
            raise ValueError(f"preprocessing attributes missing: {', '.join(missing)}")

        def decoded(value):
            return value.decode("utf-8") if isinstance(value, bytes) else value

        return cls(**{key: decoded(attrs[key]) for key in _ATTR_KEYS})

    def apply(self, image):
        """Turn an RGB image into a network input.

        Parameters
        ----------
        image : numpy.ndarray
            ``uint8``, shape ``(H, W, 3)``, RGB, already at ``input_size``
            (use :func:`resize_image` with ``self.input_size, self.resize``).

        Returns
        -------
        numpy.ndarray
            ``float32``, shape ``(3, H, W)``, channels in ``channel_order``,
            ``x_c = (p_c * pixel_scale - mean_c) / std_c``.
        """
        image = _check_rgb_uint8(image, "image")
        if image.shape[:2] != self.input_size:
            raise ValueError(
                f"image is {image.shape[0]}x{image.shape[1]} but the network expects "
                f"{self.input_size[0]}x{self.input_size[1]}; resize it first with "
                f"resize_image(image, preprocessing.input_size, preprocessing.resize)")
        pixels = image.astype(np.float32) * np.float32(self.pixel_scale)
        if self.channel_order == "BGR":
            pixels = pixels[:, :, ::-1]
        x = (pixels - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def _box_map(self, photo_size_wh):
        """``(scale, offset)`` of the affine map from input pixels to the photo's pixels,
        ``photo = (input + offset) * scale`` per ``(x, y)`` (:func:`resize_geometry`)."""
        width, height = photo_size_wh
        (new_h, new_w), (top, left) = resize_geometry((height, width), self.input_size,
                                                      self.resize)
        return np.array([width / new_w, height / new_h]), np.array([left, top])

    def input_to_photo(self, boxes, photo_size_wh):
        """Boxes (K, 4) ``(xmin, ymin, xmax, ymax)`` in network-input pixels -> pixels of a photo
        of size ``(width, height)``, undoing the resize and the crop: ``(b + offset) * scale``."""
        scale, offset = self._box_map(photo_size_wh)
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        return np.concatenate([(b[:, :2] + offset) * scale, (b[:, 2:] + offset) * scale], axis=1)

    def photo_to_input(self, boxes, photo_size_wh):
        """Boxes (K, 4) in pixels of a photo of size ``(width, height)`` -> network-input pixels,
        ``b / scale - offset`` (not clipped: a box may reach outside a cropped input)."""
        scale, offset = self._box_map(photo_size_wh)
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        return np.concatenate([b[:, :2] / scale - offset, b[:, 2:] / scale - offset], axis=1)

    def invert(self, x):
        """Undo :meth:`apply` for display.

        Parameters
        ----------
        x : numpy.ndarray
            Real-valued, shape ``(3, H, W)``, in this network's input convention
            (any ``H, W``).

        Returns
        -------
        numpy.ndarray
            ``uint8``, shape ``(H, W, 3)``, RGB: ``p_c = (x_c * std_c + mean_c) / pixel_scale``,
            rounded and clipped to 0..255.
        """
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"x must have shape (3, H, W), got {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise TypeError(f"x must be real-valued, got dtype {x.dtype}")
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values")
        scaled = x.transpose(1, 2, 0) * np.array(self.std) + np.array(self.mean)
        pixels = scaled / self.pixel_scale
        if self.channel_order == "BGR":
            pixels = pixels[:, :, ::-1]
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


#: Keras / Caffe VGG16 ("caffe" mode of ``keras.applications.vgg16.preprocess_input``).
CAFFE_VGG16 = Preprocessing(input_size=(224, 224), channel_order="BGR", pixel_scale=1.0,
                            mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0), resize="crop")
#: torchvision ImageNet models.
TORCHVISION = Preprocessing(input_size=(224, 224), channel_order="RGB", pixel_scale=1 / 255,
                            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize="crop")
#: Caffe SqueezeNet 1.0 (mean in B, G, R order).
CAFFE_SQUEEZENET = Preprocessing(input_size=(227, 227), channel_order="BGR", pixel_scale=1.0,
                                 mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0), resize="squash")


def load_batch(paths, preprocessing):
    """Load, resize and preprocess several image files into one network input batch.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files (see :func:`load_image`).
    preprocessing : Preprocessing
        The network's convention; ``preprocessing.resize`` selects the resize protocol.

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(N, 3, H, W)`` with ``(H, W) = preprocessing.input_size``,
        in the order of ``paths`` (``N = 0`` gives an empty batch).
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("paths must be a sequence of paths; wrap a single path in a list")
    if not isinstance(preprocessing, Preprocessing):
        raise TypeError("preprocessing must be a Preprocessing, "
                        f"got {type(preprocessing).__name__}")
    paths = list(paths)
    batch = np.empty((len(paths), 3, *preprocessing.input_size), dtype=np.float32)
    for index, path in enumerate(paths):
        image = load_resized(path, preprocessing.input_size, preprocessing.resize)
        batch[index] = preprocessing.apply(image)
    return batch
