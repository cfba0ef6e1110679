"""Draw a grid of example scenes with their boxes and class names, to look at them.

    python -m sensloc.data.scenes.preview out.png [--count 20] [--seed 0] [--size 64] [--start 0] [--zoom 3]

Each scene is enlarged ``zoom`` times (nearest neighbour, so pixels stay visible), its box is
drawn as a 1-pixel green frame just outside the box (so it hides no object pixel), and its
class name and occluded share are written below it.
"""
import argparse

import numpy as np
from PIL import Image, ImageDraw

from sensloc.data.scenes.generate import generate


def preview(batch, columns=5, zoom=3):
    """The grid image of a batch, as a PIL RGB image (``columns`` scenes per row)."""
    count, size = len(batch), batch.images.shape[1]
    cell, caption = size * zoom + 8, 14
    rows = -(-count // columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for n in range(count):
        left, top = (n % columns) * cell + 4, (n // columns) * (cell + caption) + 4
        tile = Image.fromarray(batch.images[n]).resize((size * zoom, size * zoom), Image.NEAREST)
        sheet.paste(tile, (left, top))
        x0, y0, x1, y1 = batch.boxes[n] * zoom
        draw.rectangle([left + x0 - 1, top + y0 - 1, left + x1, top + y1], outline=(0, 255, 0))
        name = batch.class_names[batch.labels[n]]
        draw.text((left, top + size * zoom + 2), f"{name} {batch.occlusion[n]:.0%}", fill="black")
    return sheet


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sensloc.data.scenes.preview", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--zoom", type=int, default=3)
    args = parser.parse_args(argv)
    batch = generate(args.count, seed=args.seed, size=args.size, start=args.start)
    preview(batch, zoom=args.zoom).save(args.out)
    print(f"wrote {args.out}: {len(batch)} scenes, classes {np.bincount(batch.labels).tolist()}")


if __name__ == "__main__":
    main()
