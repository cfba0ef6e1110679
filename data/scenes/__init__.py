"""Seeded synthetic scenes for weakly supervised localization: one object, its class, its box.

Each scene is an RGB image with one object of one of :data:`CLASS_NAMES` (a filled shape with a
random colour, texture, size, rotation and position, sometimes partly occluded) over a
cluttered background, together with the object's class, pixel mask and exact bounding box.
The class can only be told from the object's shape (see :mod:`sensloc.data.scenes.generate`).

    from sensloc.data import scenes
    batch = sensloc.data.scenes.generate(1000, seed=0, size=64)   # scenes 0..999 of stream 0
    batch.images   # (1000, 64, 64, 3) uint8
    batch.labels   # (1000,) int64 into scenes.CLASS_NAMES
    batch.boxes    # (1000, 4) float64 (xmin, ymin, xmax, ymax), the box of batch.masks
    scenes.save_scenes("scenes-val", batch)          # PNGs + manifest.csv for `sensloc evaluate`

``python -m sensloc.data.scenes.preview out.png`` draws a grid of example scenes with their boxes.

This package imports nothing from the rest of the library except ``sensloc._files`` (atomic
file writes), and that only when :func:`save_scenes` is called: ``import scenes`` loads only
NumPy and Pillow, so data-loader workers start fast.
"""
from sensloc.data.scenes.generate import CLASS_NAMES, Scenes, generate, mask_boxes
from sensloc.data.scenes.save import save_scenes

__all__ = ["CLASS_NAMES", "Scenes", "generate", "mask_boxes", "save_scenes"]
