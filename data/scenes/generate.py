"""The scene generator: one object of a known class and box over a cluttered background.

A scene is painted in layers, back to front, on a float32 ``(H, W, 3)`` canvas in 0..255:

1. background: a smooth random colour field (a coarse grid of random colours, bilinearly
   enlarged), mixed with a second random colour through a random texture;
2. distractors: thin lines, thin arcs and small irregular blobs in random colours;
3. the object: a class outline (:data:`scenes.shapes.SHAPES`) rotated, scaled and moved to a
   random place fully inside the image, filled with a random colour and a random texture;
4. in half of the scenes an occluder: a thick stroke or a blob over part of the object,
   hiding at most :data:`MAX_OCCLUSION` of its pixels;
5. Gaussian pixel noise, then rounding to uint8.

Why the class can only be told from the shape: every colour (background, distractors, object,
occluder) is drawn from the same distribution, uniform in the RGB cube; textures come from the
same four families for the object and the background; and the object's size is drawn
independently of its class, normalized so that its *box* has the same size distribution in
every class (the box's width and height are drawn, and the rotated outline is stretched to
fit them). What differs between classes is the outline, and what the outline implies (how
much of its box it fills).

Scene ``k`` of stream ``seed`` uses only the generator ``np.random.default_rng([SCENE_STREAM,
seed, k])`` and its label, so any chunking of the stream, in any process, gives the same bytes.
"""
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral

import numpy as np

from sensloc.data.scenes.shapes import SHAPES, coverage, pixel_grid

#: The object classes, in label order.
CLASS_NAMES = tuple(SHAPES)

#: Tags that keep the random streams of scenes and of label blocks apart.
SCENE_STREAM, LABEL_STREAM = 0x5CE4E, 0x1ABE1

#: Smallest image side: below it the smallest objects (35% of 32 = 11 px) lose their shape.
MIN_SIZE = 32

#: Object size: the geometric mean of its box sides, as a fraction of the image side.
SIDE_RANGE = (0.35, 0.75)

#: Object box aspect: ``log(width / height)`` is uniform in ``[-ASPECT, ASPECT]`` (0.78 to 1.28).
ASPECT = 0.25

#: Share of scenes with an occluder, and the largest share of the object's pixels it may hide.
OCCLUSION_PROBABILITY = 0.5
MAX_OCCLUSION = 0.2

#: Contrast: at most CLOSE_SHARE of the background pixels around the object may lie within
#: MIN_DISTANCE (Euclidean, RGB 0..255) of either of the object's two colours.
MIN_DISTANCE = 60.0
CLOSE_SHARE = 0.05


@dataclass(frozen=True, eq=False)
class Scenes:
    """A batch of scenes ``start .. start + N - 1`` of one stream.

    Attributes
    ----------
    images : (N, H, W, 3) uint8
        RGB, rows top to bottom (like :func:`images.load_image`).
    labels : (N,) int64
        Class indices into ``class_names``.
    boxes : (N, 4) float64
        ``(xmin, ymin, xmax, ymax)``, the box of ``masks[n]`` in the convention of
        :mod:`sensloc.localize.boxes` (pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``).
    masks : (N, H, W) bool
        The object's pixels before occlusion: those it covers at least half of.
    occlusion : (N,) float64
        Share of the mask's pixels that the occluder covers at least half of (0 without one).
    indices : (N,) int64
        The scene numbers ``k`` in the stream.
    seed : int
    class_names : tuple of str
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    occlusion: np.ndarray
    indices: np.ndarray
    seed: int
    class_names: tuple = CLASS_NAMES

    def __len__(self):
        return len(self.labels)


def _check_integer(value, name, minimum):
    # bool is an Integral too, but generate(10, seed=True) is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def generate(count, seed=0, size=64, start=0):
    """Scenes ``start .. start + count - 1`` of the stream ``seed``.

    Labels are balanced: every block of ``len(CLASS_NAMES)`` consecutive scenes (counted from
    scene 0) holds each class once, in an order drawn from ``(seed, block)``.

    Parameters
    ----------
    count : int >= 0
    seed : int >= 0
    size : int >= 32
        Image side ``H = W`` in pixels.
    start : int >= 0

    Returns
    -------
    Scenes
        With ``images`` ``(count, size, size, 3)`` uint8, ``labels`` ``(count,)``, ``boxes``
        ``(count, 4)``, ``masks`` ``(count, size, size)``.

    Examples
    --------
    >>> batch = generate(20, seed=0)
    >>> batch.images.shape, CLASS_NAMES[batch.labels[0]], batch.boxes[0]   # doctest: +SKIP
    """
    count = _check_integer(count, "count", 0)
    seed = _check_integer(seed, "seed", 0)
    size = _check_integer(size, "size", MIN_SIZE)
    start = _check_integer(start, "start", 0)
    images = np.empty((count, size, size, 3), np.uint8)
    masks = np.empty((count, size, size), bool)
    labels = np.empty(count, np.int64)
    occlusion = np.empty(count, np.float64)
    for n, k in enumerate(range(start, start + count)):
        labels[n] = scene_label(seed, k)
        images[n], masks[n], occlusion[n] = _scene(np.random.default_rng([SCENE_STREAM, seed, k]),
                                                   labels[n], size)
    return Scenes(images=images, labels=labels, boxes=mask_boxes(masks), masks=masks,
                  occlusion=occlusion, indices=np.arange(start, start + count, dtype=np.int64),
                  seed=seed)


def scene_label(seed, k):
    """The class of scene ``k``: position ``k % C`` of a permutation of the ``C`` classes drawn
    for block ``k // C`` of stream ``seed``."""
    n_classes = len(CLASS_NAMES)
    order = np.random.default_rng([LABEL_STREAM, seed, k // n_classes]).permutation(n_classes)
    return order[k % n_classes]


def mask_boxes(masks):
    """The box ``(min col, min row, max col + 1, max row + 1)`` of each mask, ``(N, 4)`` float64.

    Parameters
    ----------
    masks : (N, H, W) bool, each with at least one True pixel
    """
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    height, width = masks.shape[1:]
    first_row, first_col = rows.argmax(axis=1), cols.argmax(axis=1)
    last_row = height - rows[:, ::-1].argmax(axis=1)
    last_col = width - cols[:, ::-1].argmax(axis=1)
    return np.stack([first_col, first_row, last_col, last_row], axis=1).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Painting one scene


def _scene(rng, label, size):
    """Paint one scene; returns ``(image (H, W, 3) uint8, mask (H, W) bool, occluded share)``."""
    unit = size / 64.0  # distractor sizes are given for 64 x 64 and scale with the image
    canvas = _background(rng, size)

    # Place the object first (its geometry is needed to aim the occluder), paint it later.
    outline, side = _place_object(rng, label, size)
    distractors = [_distractor(rng, size, unit) for _ in range(int(rng.integers(4, 11) * unit ** 2))]
    occluder = _occluder(rng, outline, side, unit) if rng.random() < OCCLUSION_PROBABILITY else None
    layers = coverage(distractors + [outline] + ([occluder] if occluder else []), size, size)

    for rows, cols, cover in layers[:len(distractors)]:
        _paint(canvas, rows, cols, cover, _random_colour(rng))

    rows, cols, cover = layers[len(distractors)]
    object_cover = np.zeros((size, size), np.float32)
    object_cover[rows, cols] = cover
    mask = object_cover >= 0.5
    first, second = _object_colours(rng, canvas, object_cover, rows, cols)
    texture = _texture(rng, rows, cols, size)[..., None]
    _paint(canvas, rows, cols, cover, first + (second - first) * texture)

    occluded = 0.0
    if occluder:
        # Shrink the occluder about its centre until it hides at most MAX_OCCLUSION of the object
        # (after four tries it is left out: rare, as most strokes and blobs hide under 15%).
        colour = _random_colour(rng)
        for _ in range(4):
            o_rows, o_cols, o_cover = layers[-1]
            hidden = np.count_nonzero(mask[o_rows, o_cols] & (o_cover >= 0.5)) / np.count_nonzero(mask)
            if hidden <= MAX_OCCLUSION:
                _paint(canvas, o_rows, o_cols, o_cover, colour)
                occluded = hidden
                break
            centre = occluder[0].mean(axis=0)
            occluder = [centre + 0.6 * (occluder[0] - centre)]
            layers[-1] = coverage([occluder], size, size)[0]

    noise = rng.standard_normal((size, size, 3), dtype=np.float32)
    canvas += noise * np.float32(rng.uniform(0.0, 6.0))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, mask, occluded


def _paint(canvas, rows, cols, cover, colour):
    """Blend ``colour`` (``(3,)`` or the window's ``(h, w, 3)``) over the window with weight
    ``cover`` ``(h, w)``: ``c <- c + (colour - c) * cover`` (the "over" operator)."""
    window = canvas[rows, cols]
    window += (colour - window) * cover[..., None]


def _random_colour(rng):
    """One colour uniform in the RGB cube, ``(3,)`` float32: the one distribution of all colours."""
    return rng.uniform(0, 255, 3).astype(np.float32)


@lru_cache(maxsize=512)
def _enlarge_matrix(n_out, n_in):
    """``(n_out, n_in)`` bilinear interpolation weights: a coarse grid of ``n_in`` values spread
    over ``n_out`` pixels (pixel centres mapped onto grid points, ends clamped)."""
    position = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    below = np.minimum(np.floor(position).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    weight = position - below
    matrix = np.zeros((n_out, n_in), np.float32)
    matrix[np.arange(n_out), below] = 1 - weight
    if n_in > 1:
        matrix[np.arange(n_out), below + 1] += weight
    return matrix


def _smooth_noise(rng, height, width, cells, channels):
    """Smooth random field ``(height, width, channels)`` float32: a ``cells x cells`` grid of
    uniform 0..1 values enlarged bilinearly (``rows @ grid @ cols^T`` per channel)."""
    grid = rng.random((cells, cells, channels), dtype=np.float32)
    across_rows = np.tensordot(_enlarge_matrix(height, cells), grid, axes=(1, 0))  # (h, cells, c)
    return np.matmul(_enlarge_matrix(width, cells), across_rows)                    # (h, w, c)


def _texture(rng, rows, cols, size):
    """A random texture over an image window, ``(h, w)`` float32 in [0, 1], one of four kinds
    drawn with equal probability: flat (all 0), stripes or a checker board (random angle, period
    3-9 px and phase; soft edges from ``clip(0.5 + 1.5 sin)``) or smooth noise.

    Coordinates are those of the whole ``size x size`` image, as for the rows and columns.
    """
    x, y = pixel_grid(size, size)
    x, y = x[rows, cols], y[rows, cols]
    kind = rng.integers(4)
    if kind == 0:
        return np.zeros(x.shape, np.float32)
    if kind == 3:
        field = _smooth_noise(rng, *x.shape, int(rng.integers(3, 8)), 1)[..., 0]
        low, high = field.min(), field.max()
        return (field - low) / max(high - low, 1e-6)
    angle = rng.uniform(0, np.pi)
    frequency = np.float32(2 * np.pi / (rng.uniform(3, 9) * size / 64.0))
    along = (x * np.float32(np.cos(angle)) + y * np.float32(np.sin(angle))) * frequency
    wave = np.sin(along + np.float32(rng.uniform(0, 2 * np.pi)))
    if kind == 2:
        across = (y * np.float32(np.cos(angle)) - x * np.float32(np.sin(angle))) * frequency
        wave *= np.sin(across)
    return np.clip(0.5 + 1.5 * wave, 0, 1)


def _background(rng, size):
    """Smooth random colours, mixed with a second random colour through a random texture, in a
    random share of 15-50%: ``(size, size, 3)`` float32 in 0..255."""
    canvas = _smooth_noise(rng, size, size, int(rng.integers(2, 5)), 3) * np.float32(255)
    whole = slice(0, size)
    texture = _texture(rng, whole, whole, size) * np.float32(rng.uniform(0.15, 0.5))
    _paint(canvas, whole, whole, texture, _random_colour(rng))
    return canvas


def _distractor(rng, size, unit):
    """A clutter stroke in unit-free pixel coordinates: a thin line, a thin arc (at most 240
    degrees, so never a ring) or a small irregular blob (at most ~8 px, a third of the smallest
    object). Returns a layer (a list of one ring)."""
    centre = rng.uniform(0, size, 2)
    kind = rng.integers(3)
    if kind == 0:
        return [_stroke(centre, rng.uniform(0, np.pi), rng.uniform(8, 30) * unit, rng.uniform(0.5, 1.5) * unit)]
    if kind == 1:
        radius = rng.uniform(4, 14) * unit
        half_width = rng.uniform(0.5, 1.3) * unit
        begin = rng.uniform(0, 2 * np.pi)
        end = begin + rng.uniform(0.5, 4 / 3) * np.pi
        outer = _arc_points(centre, radius + half_width, begin, end)
        inner = _arc_points(centre, radius - half_width, end, begin)
        return [np.concatenate([outer, inner])]
    return [_blob(rng, centre, rng.uniform(1.5, 4) * unit)]


def _arc_points(centre, radius, begin, end, vertices=16):
    angles = np.linspace(begin, end, vertices)
    return centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _stroke(centre, angle, length, half_width):
    """A straight stroke: the ``(4, 2)`` rectangle of a segment of ``length`` through ``centre``."""
    along = 0.5 * length * np.array([np.cos(angle), np.sin(angle)])
    across = half_width * np.array([-np.sin(angle), np.cos(angle)])
    return np.stack([centre - along - across, centre + along - across,
                     centre + along + across, centre - along + across])


def _blob(rng, centre, radius):
    """An irregular 7-gon: vertex radii ``radius * U(0.5, 1)`` at jittered angles, ``(7, 2)``."""
    angles = (np.arange(7) + rng.uniform(-0.3, 0.3, 7)) * (2 * np.pi / 7)
    radii = radius * rng.uniform(0.5, 1.0, 7)
    return centre + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _place_object(rng, label, size):
    """The outline of class ``label``, rotated by a uniform angle, stretched along x and y to a
    box of random size and shape, and moved to a uniform position with its box at least one
    pixel inside the image.

    The box is drawn first, the same way for every class: the geometric mean of its sides is
    ``side ~ U(SIDE_RANGE) * size`` and its aspect ``width / height = exp(U(-ASPECT, ASPECT))``.
    Normalizing the box (not only its scale) matters: rotated, an arrow's box is longer than a
    disk's, and a classifier could read the class from the box's aspect. The stretch this takes
    is mild (at most ~1.5 for the arrow, usually much less) and keeps every class recognizable.

    Returns
    -------
    outline : list of (V, 2) float64 rings in pixel coordinates
    side : float
    """
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    rings = [ring @ rotation for ring in SHAPES[CLASS_NAMES[label]]]
    low = np.min([ring.min(axis=0) for ring in rings], axis=0)
    high = np.max([ring.max(axis=0) for ring in rings], axis=0)
    side = rng.uniform(*SIDE_RANGE) * size
    half_log_aspect = 0.5 * rng.uniform(-ASPECT, ASPECT)
    box = np.minimum(side * np.exp([half_log_aspect, -half_log_aspect]), size - 2)  # (width, height)
    scale = box / (high - low)
    corner = 1 + rng.uniform(0, 1, 2) * (size - 2 - box)
    return [(ring - low) * scale + corner for ring in rings], side


def _occluder(rng, outline, side, unit):
    """A thick stroke across the object (through a point of the middle half of its box) or a
    blob on its outline, returned as a ring ``(V, 2)`` in a one-ring list."""
    points = outline[0]
    if rng.random() < 0.5:
        low, high = points.min(axis=0), points.max(axis=0)
        through = low + (high - low) * rng.uniform(0.25, 0.75, 2)
        return [_stroke(through, rng.uniform(0, np.pi), rng.uniform(0.5, 1.2) * side,
                        rng.uniform(1.0, 3.0) * unit)]
    return [_blob(rng, points[rng.integers(len(points))], rng.uniform(0.12, 0.25) * side)]


def _object_colours(rng, canvas, object_cover, rows, cols):
    """The object's two colours ``(3,)`` float32: ``first`` uniform in the RGB cube, ``second``
    40-100 away from it in a random direction (the texture mixes them).

    Contrast: the background pixels within 3 px of the object's window that the object does not
    touch are its surroundings; among up to 16 candidate pairs the first whose colours both have
    at most CLOSE_SHARE of the surroundings within MIN_DISTANCE is taken (else the best one).
    The candidates are drawn before any is tested, so the random stream does not depend on
    the test's outcome more than through the choice.
    """
    size = canvas.shape[0]
    around = (slice(max(rows.start - 3, 0), min(rows.stop + 3, size)),
              slice(max(cols.start - 3, 0), min(cols.stop + 3, size)))
    surroundings = canvas[around][object_cover[around] < 1e-3]                     # (M, 3)
    # About 200 of them are plenty to estimate a share, and keep the distance table small.
    surroundings = surroundings[::max(len(surroundings) // 200, 1)]
    candidates = rng.uniform(0, 255, (16, 3)).astype(np.float32)
    direction = rng.standard_normal((16, 3)).astype(np.float32)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    seconds = np.clip(candidates + direction * rng.uniform(40, 100, (16, 1)).astype(np.float32), 0, 255)
    pairs = np.stack([candidates, seconds], axis=1)                                  # (16, 2, 3)
    distance = np.linalg.norm(pairs[:, :, None, :] - surroundings[None, None], axis=3)  # (16, 2, M)
    close = (distance < MIN_DISTANCE).mean(axis=2).max(axis=1)                       # (16,)
    good = np.flatnonzero(close <= CLOSE_SHARE)
    choice = good[0] if len(good) else np.argmin(close)
    return pairs[choice, 0], pairs[choice, 1]
