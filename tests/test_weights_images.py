"""Tests for sensloc.data.images: the image loader, resizing and the preprocessing conventions.

Expected pixel values are computed by hand from the documented formulas (composite over white,
v / 257, palette lookup, ...), not by calling the code under test.
"""
import csv
import re

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from sensloc.data.images import (CAFFE_SQUEEZENET, CAFFE_VGG16, TORCHVISION, ImageError,
                                 Preprocessing, load_batch, load_image, resize_image)


def save(image, path):
    image.save(path)
    return path


def grey_row(values):
    """The (1, n, 3) uint8 image a grey row of ``values`` must load as."""
    return np.repeat(np.array(values, np.uint8)[None, :, None], 3, axis=2)


# ---------------------------------------------------------------- every mode becomes RGB

def test_rgb_png_loads_unchanged(tmp_path, rng):
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    loaded = load_image(save(Image.fromarray(pixels), tmp_path / "rgb.png"))
    assert loaded.dtype == np.uint8 and loaded.shape == (5, 7, 3)
    np.testing.assert_array_equal(loaded, pixels)


def test_grey_and_one_bit(tmp_path):
    grey = Image.fromarray(np.array([[0, 17, 255]], np.uint8))
    loaded = load_image(save(grey, tmp_path / "l.png"))
    np.testing.assert_array_equal(loaded, grey_row([0, 17, 255]))
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    np.testing.assert_array_equal(load_image(save(bits, tmp_path / "1.png")), grey_row([0, 255]))


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.array([[[200, 50, 0, 64], [1, 2, 3, 0], [9, 8, 7, 255]]], np.uint8)
    loaded = load_image(save(Image.fromarray(rgba), tmp_path / "rgba.png"))
    # round((c * a + 255 * (255 - a)) / 255): 241.196, 203.549, 191.0; a = 0 -> white; a = 255 -> c
    np.testing.assert_array_equal(loaded, [[[241, 204, 191], [255, 255, 255], [9, 8, 7]]])


def test_grey_with_alpha(tmp_path):
    la = Image.new("LA", (1, 1), (200, 100))
    # (200 * 100 + 255 * 155) / 255 = 233.43
    np.testing.assert_array_equal(load_image(save(la, tmp_path / "la.png")), [[[233, 233, 233]]])


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (3, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30])
    for x, index in enumerate([1, 2, 0]):
        palette.putpixel((x, 0), index)
    expected = [[[0, 0, 255], [10, 200, 30], [255, 0, 0]]]
    np.testing.assert_array_equal(load_image(save(palette, tmp_path / "p.png")), expected)
    palette.info["transparency"] = 0  # palette entry 0 (red) is fully transparent
    loaded = load_image(save(palette, tmp_path / "p_transparent.png"))
    np.testing.assert_array_equal(loaded, [[[0, 0, 255], [10, 200, 30], [255, 255, 255]]])


def test_cmyk_matches_pillow_conversion(tmp_path):
    cmyk = Image.new("CMYK", (2, 1), (10, 20, 30, 40))
    cmyk.putpixel((1, 0), (0, 255, 128, 0))
    loaded = load_image(save(cmyk, tmp_path / "cmyk.tif"))
    np.testing.assert_array_equal(loaded, np.asarray(cmyk.convert("RGB")))


SIXTEEN_BIT = [0, 65535, 257, 128, 129, 32896]
SIXTEEN_BIT_AS_8 = [0, 255, 1, 0, 1, 128]  # v / 257 = 0, 255, 1, 0.498, 0.502, 128


def test_sixteen_bit_png(tmp_path):
    image = Image.fromarray(np.array([SIXTEEN_BIT], np.uint16))
    assert image.mode == "I;16"
    np.testing.assert_array_equal(load_image(save(image, tmp_path / "16.png")),
                                  grey_row(SIXTEEN_BIT_AS_8))


def test_sixteen_bit_big_endian_tiff(tmp_path):
    raw = np.array(SIXTEEN_BIT, ">u2").tobytes()
    image = Image.frombytes("I;16B", (len(SIXTEEN_BIT), 1), raw)
    path = save(image, tmp_path / "16b.tif")
    assert Image.open(path).mode == "I;16B"
    np.testing.assert_array_equal(load_image(path), grey_row(SIXTEEN_BIT_AS_8))


def test_32_bit_integer_is_clipped_to_16_bit(tmp_path):
    image = Image.fromarray(np.array([[-5, 70000, 514, 65535]], np.int32))
    assert image.mode == "I"
    np.testing.assert_array_equal(load_image(save(image, tmp_path / "i.tif")),
                                  grey_row([0, 255, 2, 255]))


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.25, 1.0, -0.5], [0, 64, 255, 0]),        # max <= 1: times 255 (63.75 -> 64)
    ([0.0, 100.4, 300.0, 2.0], [0, 100, 255, 2]),      # max > 1: already 0..255, clipped
])
def test_float_image(tmp_path, values, expected):
    image = Image.fromarray(np.array([values], np.float32))
    assert image.mode == "F"
    np.testing.assert_array_equal(load_image(save(image, tmp_path / "f.tif")), grey_row(expected))


def test_exif_orientation_is_applied(tmp_path):
    # Stored 24 rows x 40 columns, red block in the stored top-left corner.
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: stored row 0 is the right edge, column 0 the top edge
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    loaded = load_image(path).astype(int)
    assert loaded.shape == (40, 24, 3)
    # So the stored top-left corner is displayed top-right (JPEG is lossy: compare loosely).
    corner = loaded[1:7, -7:-1].reshape(-1, 3)
    assert (corner[:, 0] > 200).all() and (corner[:, 1:] < 60).all()
    for other in (loaded[1:7, 1:7], loaded[-7:-1, 1:7], loaded[-7:-1, -7:-1]):
        assert (other < 60).all()


# ---------------------------------------------------------------- bad files

def bad_files(directory):
    rng = np.random.default_rng(1)
    jpeg = directory / "good.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg)
    data = jpeg.read_bytes()
    files = {
        "random.jpg": rng.bytes(2000),
        "empty.png": b"",
        "truncated.jpg": data[:len(data) // 2],
        "notes.txt": b"this is not an image\n" * 20,
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return list(files) + ["missing.png"]


@pytest.mark.parametrize("name", ["random.jpg", "empty.png", "truncated.jpg", "notes.txt",
                                  "missing.png"])
def test_bad_file_raises_image_error_naming_it(tmp_path, name):
    assert name in bad_files(tmp_path)
    with pytest.raises(ImageError, match=re.escape(name)):
        load_image(tmp_path / name)


def test_image_error_is_value_error_and_directory_is_refused(tmp_path):
    assert issubclass(ImageError, ValueError)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)
    with pytest.raises(TypeError):
        load_image(123)


# ---------------------------------------------------------------- resizing

def test_squash_gives_exact_size_and_keeps_a_constant_colour():
    image = np.full((20, 30, 3), (10, 100, 200), np.uint8)
    resized = resize_image(image, (7, 11), "squash")
    assert resized.shape == (7, 11, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized, np.full((7, 11, 3), (10, 100, 200)))


def test_squash_reduces_with_antialiasing():
    # A one-pixel checkerboard reduced 8x must average to grey; point sampling gives 0 or 255.
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    reduced = resize_image(np.repeat(checker[:, :, None], 3, axis=2), (8, 8), "squash")
    assert (np.abs(reduced.astype(int) - 127.5) <= 1).all()


@pytest.mark.parametrize("height, width, scaled_hw, top, left", [
    (200, 300, (256, 384), 16, 80),   # shorter side 200 -> 256, longer 300 -> 256 * 1.5 = 384
    (200, 307, (256, 392), 16, 84),   # 256 * 307 / 200 = 392.96 is truncated, as torchvision does
    (307, 200, (392, 256), 84, 16),
])
def test_crop_geometry_is_resize_256_then_centre_224(rng, height, width, scaled_hw, top, left):
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    scaled = np.asarray(Image.fromarray(image).resize(scaled_hw[::-1], Image.BILINEAR))
    np.testing.assert_array_equal(resize_image(image, (224, 224), "crop"),
                                  scaled[top:top + 224, left:left + 224])


@pytest.mark.parametrize("tall", [False, True])
def test_crop_takes_the_centre(tall):
    # Left half black, right half white: a centred crop shows both halves, split in the middle.
    image = np.zeros((100, 400, 3), np.uint8)
    image[:, 200:] = 255
    if tall:
        image = image.transpose(1, 0, 2).copy()
    crop = resize_image(image, (224, 224), "crop")
    if tall:
        crop = crop.transpose(1, 0, 2)
    assert crop.shape == (224, 224, 3)
    # Bilinear upscaling by 2.56 blurs the edge over a few pixels around column 112.
    assert (crop[:, :105] == 0).all() and (crop[:, 119:] == 255).all()


def test_resize_refuses_bad_input():
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="resize mode"):
        resize_image(image, (2, 2), "stretch")
    with pytest.raises(TypeError, match="uint8"):
        resize_image(image.astype(np.float32), (2, 2), "squash")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        resize_image(image[:, :, 0], (2, 2), "squash")
    with pytest.raises(ValueError, match="size_hw"):
        resize_image(image, (0, 2), "squash")


# ---------------------------------------------------------------- preprocessing

PIXEL = (10, 100, 200)  # R, G, B


@pytest.mark.parametrize("preprocessing, expected", [
    # BGR, minus the Keras VGG16 means: 200 - 103.939, 100 - 116.779, 10 - 123.68
    (CAFFE_VGG16, [96.061, -16.779, -113.68]),
    # RGB, (p / 255 - mean) / std
    (TORCHVISION, [-1.9466564, -0.2850140, 1.6813943]),
    # BGR, minus (104, 117, 123)
    (CAFFE_SQUEEZENET, [96.0, -17.0, -113.0]),
])
def test_apply_on_a_known_pixel(rng, preprocessing, expected):
    height, width = preprocessing.input_size
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[3, 5] = PIXEL
    x = preprocessing.apply(image)
    assert x.dtype == np.float32 and x.shape == (3, height, width)
    np.testing.assert_allclose(x[:, 3, 5], expected, rtol=1e-5, atol=1e-5)
    restored = preprocessing.invert(x)
    assert restored.dtype == np.uint8
    assert np.abs(restored.astype(int) - image).max() <= 1


def test_apply_refuses_the_wrong_size_and_dtype():
    with pytest.raises(ValueError, match="resize it first"):
        CAFFE_VGG16.apply(np.zeros((227, 227, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        CAFFE_VGG16.apply(np.zeros((224, 224, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        CAFFE_VGG16.invert(np.zeros((224, 224, 3), np.float32))


@pytest.mark.parametrize("field, value", [
    ("input_size", (224,)), ("input_size", (0, 224)), ("input_size", (224.5, 224)),
    ("channel_order", "rgb"), ("pixel_scale", 0.0), ("pixel_scale", "1"),
    ("mean", (1.0, 2.0)), ("std", (1.0, 0.0, 1.0)), ("std", (1.0, np.nan, 1.0)),
    ("resize", "stretch"),
])
def test_preprocessing_validates_its_fields(field, value):
    fields = CAFFE_VGG16.to_attrs() | {field: value}
    with pytest.raises(ValueError, match=field):
        Preprocessing(**fields)


@pytest.mark.parametrize("preprocessing", [CAFFE_VGG16, TORCHVISION, CAFFE_SQUEEZENET])
def test_attrs_round_trip_through_hdf5(tmp_path, preprocessing):
    h5py = pytest.importorskip("h5py")
    attrs = preprocessing.to_attrs()
    assert set(attrs) == {"input_size", "channel_order", "pixel_scale", "mean", "std", "resize"}
    with h5py.File(tmp_path / "p.h5", "w") as file:
        file.attrs.update(attrs)
        file.attrs["fixed_length_order"] = np.bytes_(preprocessing.channel_order)
        file.attrs["unrelated"] = "ignored"
    with h5py.File(tmp_path / "p.h5", "r") as file:
        restored = Preprocessing.from_attrs(file.attrs)
        as_bytes = Preprocessing.from_attrs(
            dict(file.attrs) | {"channel_order": file.attrs["fixed_length_order"]})
    assert restored == preprocessing and as_bytes == preprocessing
    assert isinstance(restored.input_size[0], int) and isinstance(restored.mean[0], float)
    with pytest.raises(ValueError, match="missing: std"):
        Preprocessing.from_attrs({k: v for k, v in attrs.items() if k != "std"})


# ---------------------------------------------------------------- batches and real photos

def test_load_batch_keeps_order_and_applies_resize_and_preprocessing(tmp_path):
    first = save(Image.new("RGB", (50, 30), PIXEL), tmp_path / "a.png")
    second = save(Image.new("RGB", (300, 400), (255, 0, 0)), tmp_path / "b.jpg")
    batch = load_batch([first, second], CAFFE_SQUEEZENET)
    assert batch.dtype == np.float32 and batch.shape == (2, 3, 227, 227)
    # Squashing a constant image keeps it constant; BGR minus (104, 117, 123).
    np.testing.assert_array_equal(batch[0], np.broadcast_to([[[96.0]], [[-17.0]], [[-113.0]]],
                                                            (3, 227, 227)))
    # JPEG of pure red decodes to within a few levels of (255, 0, 0).
    np.testing.assert_allclose(batch[1].mean(axis=(1, 2)), [-104, -117, 132], atol=3)
    assert load_batch([], TORCHVISION).shape == (0, 3, 224, 224)
    with pytest.raises(TypeError, match="single path"):
        load_batch(str(first), TORCHVISION)


def test_real_imagenet_photos_load_at_their_manifest_size():
    folder = shared_path("data", "imagenet-val-full")
    with open(folder / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))[:5]
    for row in rows:
        image = load_image(folder / row["file"])
        assert image.shape == (int(row["height"]), int(row["width"]), 3)
        assert image.dtype == np.uint8 and 20 < image.mean() < 235


# ---------------------------------------------------------------- large files: decoded at the size needed

def test_integer_compositing_equals_the_float_formula_for_every_colour_and_alpha(tmp_path):
    from sensloc.data._decode import to_rgb
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.stack([c, c, 255 - c, a], axis=2).astype(np.uint8)  # (256, 256, 4): all pairs
    colour, alpha = rgba[..., :3].astype(np.float64), rgba[..., 3:].astype(np.float64)
    expected = np.rint((colour * alpha + 255 * (255 - alpha)) / 255).astype(np.uint8)
    np.testing.assert_array_equal(to_rgb(Image.fromarray(rgba, "RGBA"), "x.png"), expected)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_load_resized_equals_resize_of_load_when_nothing_is_shrunk(tmp_path, rng, mode):
    from sensloc.data.images import load_resized
    pixels = rng.integers(0, 256, (60, 90, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA")
    image = image if mode == "RGBA" else image.convert("RGB").convert(mode) if mode != "I;16" \
        else Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    path = save(image, tmp_path / "photo.png")
    for size, resize in (((32, 32), "squash"), ((20, 24), "crop")):
        np.testing.assert_array_equal(load_resized(path, size, resize),
                                      resize_image(load_image(path), size, resize))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_large_photo_is_shrunk_before_resizing_almost_invisibly(tmp_path, suffix):
    from sensloc.data.images import image_size, load_resized
    # A smooth photo (a blurred disc with a soft alpha edge for PNG), 1200 x 900: shrunk 4x
    # (JPEG: decoded at 1/4 by DCT scaling) on the way to 32 x 32.
    y, x = np.mgrid[0:900, 0:1200]
    r = np.hypot(x - 500, y - 400)
    disc = np.clip(255 - r / 2, 0, 255)
    rgba = np.stack([disc, 255 - disc, np.full_like(disc, 90), np.clip(400 - r / 2, 0, 255)], 2)
    image = Image.fromarray(rgba.astype(np.uint8), "RGBA")
    path = tmp_path / f"large{suffix}"
    (image if suffix == ".png" else image.convert("RGB")).save(path, quality=95)
    assert image_size(path) == (1200, 900)
    for resize in ("squash", "crop"):
        shrunk = load_resized(path, (32, 32), resize).astype(int)
        full = resize_image(load_image(path), (32, 32), resize).astype(int)
        # Box averages then bilinear against one wide bilinear filter: the two filters differ
        # in shape, not in centre, so on this slope (1/2 grey level per file pixel, about 18
        # per output pixel) they differ by a small part of one output pixel's step: measured
        # at most 4 levels, mean 0.7 (PNG squash), bounded at a quarter step and 1 level.
        assert np.abs(shrunk - full).max() <= 18 / 4 and np.abs(shrunk - full).mean() < 1


def png_header(path, width, height):
    """A PNG that declares ``width x height`` RGBA pixels but holds almost no data."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [8193, 10000, 50000])  # ours, Pillow's warning, Pillow's error
def test_images_above_the_pixel_limit_are_refused_naming_them(tmp_path, side):
    from sensloc.data.images import MAX_PIXELS, load_resized
    path = png_header(tmp_path / "huge.png", side, side)
    assert side * side > MAX_PIXELS
    for load in (load_image, lambda p: load_resized(p, (32, 32), "squash")):
        with pytest.raises(ImageError, match=r"huge\.png: too large: ") as error:
            load(path)
        assert "\n" not in str(error.value)
