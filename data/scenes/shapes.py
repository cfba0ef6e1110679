"""Class shapes as polygon outlines, and an exact-in-x scanline rasterizer with anti-aliasing.

Every shape, object or distractor, is a *layer*: a list of closed rings, each a ``(V, 2)`` array
of ``(x, y)`` vertices (x to the right, y down, in the pixel coordinates of
:mod:`sensloc.localize.boxes`: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``). A point is inside a
layer when its winding number is non-zero, so a hole is a ring of the opposite orientation
(:func:`oriented` makes that so). One rasterizer for all layers keeps the code small: a disk is a
48-gon, a ring is two 48-gons, and there is no per-shape drawing code to get wrong.

Outlines are in *unit coordinates*: centred near the origin with a size of about 2; the
generator rotates them, scales them to the wanted box size and moves them into the image.
"""
from functools import lru_cache

import numpy as np

#: Vertices on a full circle: at the largest object side (about 70 px) a 48-gon deviates from
#: the circle by r * (1 - cos(pi / 48)) = 0.07 px, far below a pixel.
CIRCLE_VERTICES = 48

#: Sub-rows per pixel row. Coverage is exact along x; along y it is the mean of this many rows.
SUBSAMPLES = 4


def signed_area(ring):
    """Shoelace area of a closed ring ``(V, 2)``: positive when the vertices turn clockwise on
    screen (x right, y down), i.e. counter-clockwise in the usual y-up picture."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def oriented(ring, positive=True):
    """``ring`` as a float64 array, reversed if needed so that ``signed_area > 0`` iff ``positive``.

    Outer rings are positive and holes negative, so that winding numbers cancel inside a hole.
    """
    ring = np.asarray(ring, dtype=np.float64)
    return ring if (signed_area(ring) > 0) == positive else ring[::-1].copy()


def arc(cx, cy, radius, start, stop, vertices):
    """``vertices`` points ``(vertices, 2)`` on a circle, from angle ``start`` to ``stop`` (radians,
    both included; y down, so a growing angle turns clockwise on screen)."""
    angles = np.linspace(start, stop, vertices)
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)


def circle(cx, cy, radius, vertices=CIRCLE_VERTICES):
    """A closed regular ``vertices``-gon inscribed in the circle, ``(vertices, 2)``."""
    return arc(cx, cy, radius, 0.0, 2 * np.pi, vertices + 1)[:-1]


def _regular(points, radius=1.0, rotation=-np.pi / 2):
    """Regular polygon with ``points`` vertices, the first pointing up (y down)."""
    angles = rotation + 2 * np.pi * np.arange(points) / points
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(points=5, inner=0.45):
    """Star polygon: ``2 * points`` vertices alternating between radius 1 and ``inner``."""
    angles = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _crescent(offset=0.55, inner_radius=0.8):
    """The unit disk minus a disk of radius ``inner_radius`` centred ``offset`` to the right.

    The two circles meet at ``x = (offset^2 + 1 - inner_radius^2) / (2 offset)``; the outline is
    the unit circle's long arc (through the left side) from the upper to the lower meeting point,
    then the inner circle's arc back, also through its left side.
    """
    xm = (offset ** 2 + 1 - inner_radius ** 2) / (2 * offset)
    ym = np.sqrt(1 - xm ** 2)
    outer_angle = np.arctan2(ym, xm)                 # upper meeting point seen from (0, 0)
    inner_angle = np.arctan2(ym, xm - offset)        # ... seen from the inner centre
    # y is down, so angle +a is below the x axis: walk the unit circle from -a (upper point)
    # backwards through pi to +a - 2 pi (lower point), then the inner circle forwards again.
    outer = arc(0.0, 0.0, 1.0, -outer_angle, outer_angle - 2 * np.pi, 40)
    inner = arc(offset, 0.0, inner_radius, inner_angle - 2 * np.pi, -inner_angle, 28)[1:-1]
    return np.concatenate([outer, inner])


def _heart(vertices=64):
    """The classic parametric heart, ``x = 16 sin^3 t``, ``y = -(13 cos t - 5 cos 2t - 2 cos 3t - cos 4t)``."""
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1) / 16.0


def _outline(points):
    return np.array(points, dtype=np.float64)


#: Arm half-width of the cross and stem half-width of the T and the arrow, in unit coordinates
#: (the shapes span [-1, 1]): thick enough that a thin occluding stroke cannot cut an arm off.
_ARM = 0.32

#: The object classes, each a list of rings in unit coordinates (outer ring first, then holes).
#: They are chosen to stay distinct under any rotation at ~20 px: no two are rotations of each
#: other, and none is a mirror image of another (the generator never mirrors).
SHAPES = {
    "disk": [circle(0, 0, 1)],
    "ring": [circle(0, 0, 1), circle(0, 0, 0.55)],
    "triangle": [_regular(3)],
    "square": [_outline([(-1, -1), (1, -1), (1, 1), (-1, 1)])],
    "cross": [_outline([(-_ARM, -1), (_ARM, -1), (_ARM, -_ARM), (1, -_ARM), (1, _ARM), (_ARM, _ARM),
                        (_ARM, 1), (-_ARM, 1), (-_ARM, _ARM), (-1, _ARM), (-1, -_ARM), (-_ARM, -_ARM)])],
    "star": [_star()],
    "crescent": [_crescent()],
    "heart": [_heart()],
    "arrow": [_outline([(0, -1), (0.8, -0.15), (_ARM * 0.8, -0.15), (_ARM * 0.8, 1),
                        (-_ARM * 0.8, 1), (-_ARM * 0.8, -0.15), (-0.8, -0.15)])],
    "letter_T": [_outline([(-1, -1), (1, -1), (1, -0.45), (_ARM, -0.45), (_ARM, 1),
                           (-_ARM, 1), (-_ARM, -0.45), (-1, -0.45)])],
}
SHAPES = {name: [oriented(ring, positive=(index == 0)) for index, ring in enumerate(rings)]
          for name, rings in SHAPES.items()}


def coverage(layers, height, width):
    """The fraction of each pixel covered by each layer (anti-aliased rasterization).

    Each pixel row is cut into :data:`SUBSAMPLES` horizontal lines at heights
    ``i + (s + 0.5) / SUBSAMPLES``. Along one line the winding number is a step function that
    changes by ``+1`` or ``-1`` where it crosses an edge (the sign is the edge's vertical
    direction). A crossing at ``x`` in pixel ``j = floor(x)`` adds ``w * (j + 1 - x)`` to pixel ``j``
    and ``w`` to every pixel right of it; writing that as ``w * (j + 1 - x)`` at ``j`` and
    ``w * (x - j)`` at ``j + 1`` of a difference array, a cumulative sum along x gives the exact
    covered length of every pixel, with no loop over pixels and no sorting of crossings.
    Averaging the sub-lines gives the covered area (exact in x, ``SUBSAMPLES`` samples in y).

    Each layer is computed only inside its *window*, the pixels of its vertices' bounding box
    (clipped to the image): distractors are small, and the cost is proportional to the area.

    Parameters
    ----------
    layers : list of list of (V, 2) float arrays
        ``L`` layers, each a list of closed rings of ``(x, y)`` vertices in pixel coordinates;
        holes must have the opposite orientation to their outer ring (see :func:`oriented`).
        Layers may overlap each other and the image border (what lies outside is clipped).
    height, width : int
        The image size.

    Returns
    -------
    list of L tuples ``(rows, cols, cover)``
        ``rows`` and ``cols`` are slices of the image (the window), ``cover`` a float32 array of
        the window's shape with values in [0, 1]; the layer covers nothing outside its window.
    """
    rings = [ring for layer in layers for ring in layer]
    start = np.concatenate(rings)
    # Edge k goes from vertex k to the next vertex of its ring (the last one back to the first).
    ring_lengths = np.array([len(ring) for ring in rings])
    ring_ends = np.cumsum(ring_lengths)
    following = np.arange(1, len(start) + 1)
    following[ring_ends - 1] = ring_ends - ring_lengths
    end = start[following]
    vertices_per_layer = [sum(len(ring) for ring in layer) for layer in layers]
    layer_of_edge = np.repeat(np.arange(len(layers)), vertices_per_layer)
    # Windows: whole pixels touched by the layer's vertices, clipped to the image.
    first_vertex = np.cumsum(vertices_per_layer) - vertices_per_layer
    low = np.minimum.reduceat(start, first_vertex, axis=0)
    high = np.maximum.reduceat(start, first_vertex, axis=0)
    left, top = np.clip(np.floor(low), 0, [width, height]).astype(np.int64).T
    right, bottom = np.clip(np.ceil(high), 0, [width, height]).astype(np.int64).T
    top, bottom = np.minimum(top, bottom), bottom
    left, right = np.minimum(left, right), right
    # The layers' difference arrays are packed one after the other in one flat array; a
    # window row has right - left + 2 entries (room for "column + 1" at the right border).
    stride = right - left + 2
    sizes = (bottom - top) * stride
    offsets = np.cumsum(sizes) - sizes

    x0, y0, x1, y1 = start[:, 0], start[:, 1], end[:, 0], end[:, 1]
    # Sub-line r sits at y = (r + 0.5) / S. An edge crosses the lines r with
    # min(y0, y1) <= y < max(y0, y1) (half-open, so a vertex on a line is counted once):
    # r from ceil(S * low - 0.5) to ceil(S * high - 0.5) - 1, clipped to the image.
    lines = height * SUBSAMPLES
    first = np.clip(np.ceil(SUBSAMPLES * np.minimum(y0, y1) - 0.5), 0, lines).astype(np.int64)
    stop = np.clip(np.ceil(SUBSAMPLES * np.maximum(y0, y1) - 0.5), 0, lines).astype(np.int64)
    counts = stop - first
    # One entry per (edge, line) crossing, without a dense (lines, edges) table.
    edge = np.repeat(np.arange(len(start)), counts)
    line = first[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(counts) - counts, counts)
    y = (line + 0.5) / SUBSAMPLES
    x = x0[edge] + (y - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    winding = np.where(y1[edge] > y0[edge], 1.0, -1.0)
    layer = layer_of_edge[edge]
    # Left of the image the whole line is right of the crossing; right of it, nothing is.
    x = np.clip(x, 0.0, width) - left[layer]
    column = np.floor(x).astype(np.int64)
    fraction = x - column
    flat = offsets[layer] + (line // SUBSAMPLES - top[layer]) * stride[layer] + column
    steps = np.bincount(np.concatenate([flat, flat + 1]),
                        weights=np.concatenate([winding * (1 - fraction), winding * fraction]),
                        minlength=int(sizes.sum()))
    # Along every line the winding steps of a closed outline sum to zero, so one cumulative sum
    # over the whole packed array equals the sums row by row (and is much faster in NumPy).
    # |winding| because a ring may turn either way; min because overlapping rings of one layer
    # (never the case for the shapes here) would count twice. Rounding leaves ~1e-15 where the
    # coverage is 0, so compare coverage with a tolerance, never with == 0.
    cover = np.minimum(np.abs(np.cumsum(steps), dtype=np.float32) * (1.0 / SUBSAMPLES), 1.0)
    return [(slice(top[i], bottom[i]), slice(left[i], right[i]),
             cover[offsets[i]:offsets[i] + sizes[i]].reshape(-1, stride[i])[:, :-2])
            for i in range(len(layers))]


def coverage_image(layer, height, width):
    """The coverage of one layer as a whole ``(height, width)`` float32 image (see :func:`coverage`)."""
    image = np.zeros((height, width), np.float32)
    rows, cols, cover = coverage([layer], height, width)[0]
    image[rows, cols] = cover
    return image


@lru_cache(maxsize=8)
def pixel_grid(height, width):
    """Pixel-centre coordinates ``(x, y)``, each ``(height, width)`` float32 (read-only, cached)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    x.flags.writeable = y.flags.writeable = False
    return x, y
