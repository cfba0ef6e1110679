"""Reading an image file as an RGB ``uint8`` array, whatever the file holds (grey, palette, alpha,
CMYK, 16-bit, float, rotated by an EXIF tag), refusing with one line naming the file what is not
an image. Public through :mod:`sensloc.data.images` (:func:`load_image`, :func:`image_size`,
:class:`ImageError`, :data:`MAX_PIXELS`); :func:`decode` and :func:`to_rgb` are the two steps
:func:`sensloc.data.images.load_resized` takes with a reduced decode in between.
"""
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest image accepted, in pixels (width x height): 8192 x 8192. A 16-bit RGBA file this
#: size decodes to 0.5 GB; Pillow's own bomb check (``Image.MAX_IMAGE_PIXELS``) is left alone.
MAX_PIXELS = 8192 * 8192


class ImageError(ValueError):
    """A file that cannot be read as an image: missing, empty, truncated, corrupt or not an image.

    The message always starts with the path of the offending file.
    """


def load_image(path, min_side=None):
    """Read an image file as an RGB ``uint8`` array.

    Parameters
    ----------
    path : str or os.PathLike
        Any file Pillow can read. Of a multi-frame file (GIF, TIFF) the first frame is used.
    min_side : int, optional
        Decode at a reduced scale (an integer factor) as long as both sides stay at least
        ``min_side``: for display, or for :func:`load_resized`. Default: full size.

    Returns
    -------
    numpy.ndarray
        ``uint8``, shape ``(H, W, 3)``, RGB, rows top to bottom as the photo is meant to be seen:
        an EXIF ``Orientation`` tag is applied (``PIL.ImageOps.exif_transpose``).

    Notes
    -----
    Every Pillow mode becomes RGB:

    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ...: Pillow's own conversion to RGB
      (a grey value ``g`` gives ``(g, g, g)``; a palette index gives its palette colour).
    * Anything with transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent index):
      composited over white, ``c_out = round((c * a + 255 * (255 - a)) / 255)``, so that a
      transparent background does not read as black (in integers: the numerator is at most
      255 * 255, and ``round(n / 255) = (n + 127) // 255`` since 255 is odd and there are no ties).
    * 16-bit grey (``I;16``, ``I;16B``, ...) and ``I`` (32-bit integers, assumed to hold 16-bit
      data, as older Pillow versions return for 16-bit PNG): clipped to ``0..65535`` and mapped
      to ``round(v / 257)``, so that 65535 -> 255.
    * ``F`` (float): taken to be in ``0..1`` if its maximum is at most 1, else in ``0..255``;
      scaled to ``0..255``, clipped and rounded (half to even).

    Raises
    ------
    TypeError
        If ``path`` is not a string or path-like object.
    ImageError
        If the file is missing, empty, not an image, truncated or corrupt, holds NaN values,
        or has more than :data:`MAX_PIXELS` pixels.
        Truncation is detected because the whole image is decoded here (``Image.load``);
        Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay ``False`` for that to work.
    """
    image, _ = decode(path, min_side)
    return to_rgb(image, path)


def image_size(path):
    """``(width, height)`` of an image file as :func:`load_image` returns it at full size
    (EXIF orientation applied), read from the header only. Raises ImageError like it."""
    return decode(path, None, header_only=True)[1][::-1]


def _check_file(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_image expects a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    return path


#: Modes that ``Image.reduce`` cannot average, and the mode each is averaged in instead.
_REDUCIBLE = {"1": "L", "P": "RGB", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I",
              "I;16N": "I"}


def decode(path, min_side, header_only=False):
    """Open, check the size, decode (reduced while both sides stay >= ``min_side``) and apply
    the EXIF orientation. Returns ``(Pillow image, (h, w) of the full-size oriented image)``."""
    path = _check_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns (and above twice its limit raises) for huge images; ours is lower.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(f"{path}: too large: {width}x{height} is more than the "
                                     f"{MAX_PIXELS:,} pixels sensloc reads (MAX_PIXELS in "
                                     "sensloc.data.images); shrink the image first")
                transposed = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # Orientation
                full_hw = (width, height) if transposed else (height, width)
                if header_only:
                    return None, full_hw
                if min_side and image.format == "JPEG" \
                        and min(width, height) >= 2 * min_side:
                    image.draft(None, (min_side, min_side))  # DCT scaling: 1/2, 1/4 or 1/8
                # Image.open only reads the header; decode everything now so that a truncated
                # or corrupt file fails here, with its name, rather than somewhere downstream.
                image.load()
                image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path}: too large: more than the {MAX_PIXELS:,} pixels sensloc "
                         f"reads (MAX_PIXELS in sensloc.data.images; Pillow: {error})") from None
    except Image.DecompressionBombWarning as error:
        raise ImageError(f"{path}: too large: more pixels than Pillow's limit allows "
                         f"({error})") from None
    except UnidentifiedImageError as error:
        raise ImageError(f"{path}: not an image file Pillow can read") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"{path}: truncated or corrupt image data ({error})") from error
    factor = min(image.size) // min_side if min_side else 1
    if factor >= 2:
        if image.mode in _REDUCIBLE or "transparency" in image.info:
            image = image.convert("RGBA" if "transparency" in image.info
                                  else _REDUCIBLE[image.mode])
        image = image.reduce(factor)  # box average; RGBA and LA with premultiplied alpha
    return image, full_hw


def to_rgb(image, path):
    """Convert a decoded Pillow image of any mode to ``uint8 (H, W, 3)`` RGB (see load_image)."""
    if image.mode == "F" or image.mode.startswith("I"):
        grey = _high_depth_to_uint8(np.asarray(image), image.mode, path)
        return np.repeat(grey[:, :, np.newaxis], 3, axis=2)
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"))
        out = np.empty(rgba.shape[:2] + (3,), np.uint8)
        for row in range(0, len(rgba), 256):  # in bands: uint16 temporaries of 256 rows
            band = rgba[row:row + 256].astype(np.uint16)
            colour, alpha = band[:, :, :3], band[:, :, 3:]
            # colour * alpha + 255 * (255 - alpha) <= 255 * 255, + 127 still fits in uint16.
            out[row:row + 256] = (colour * alpha + 255 * (255 - alpha) + 127) // 255
        return out
    try:
        # np.array (not asarray): Pillow's buffer is read-only and callers may want to write.
        return np.array(image.convert("RGB"))
    except ValueError as error:
        raise ImageError(f"{path}: cannot convert Pillow mode {image.mode!r} to RGB") from error


def _high_depth_to_uint8(values, mode, path):
    """Map a 16-bit, 32-bit integer or float grey array ``(H, W)`` to ``uint8`` (see load_image)."""
    values = values.astype(np.float64)
    if np.isnan(values).any():
        raise ImageError(f"{path}: the image (mode {mode}) contains NaN values")
    if mode == "F":
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)
    # v / 257 maps 0..65535 onto 0..255 exactly at both ends (65535 = 255 * 257).
    return np.rint(np.clip(values, 0.0, 65535.0) / 257.0).astype(np.uint8)
