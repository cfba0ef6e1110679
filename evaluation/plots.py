"""Figures of an evaluation: CorLoc per configuration, and example photos with their boxes."""
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def corloc_bars(summary, path):
    """Horizontal bars of CorLoc (GT-known) with 95% bootstrap intervals, baselines in grey."""
    plt = _pyplot()
    names = list(summary.rows)
    values = np.array([summary.rows[n]["corloc"] for n in names]) * 100
    ci = np.array([summary.rows[n]["ci95"] for n in names]) * 100
    colours = ["0.6" if n.startswith("baseline") else "tab:blue" for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2), constrained_layout=True)
    ax.barh(names, values, xerr=[values - ci[:, 0], ci[:, 1] - values], color=colours, capsize=3)
    for y, (v, high) in enumerate(zip(values, ci[:, 1])):
        # Right of the interval's cap, not of the bar, so the label never sits on the error bar.
        ax.text(max(v, high) + 1.5, y, f"{v:.1f}%", va="center")
    ax.invert_yaxis()
    ax.set_xlim(0, 110)  # room for a label right of an interval reaching 100%
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("CorLoc, ground-truth class known (%), with 95% bootstrap interval")
    ax.set_title(f"Localization on {summary.n} photos")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def example_grid(records, predicted_boxes, title, path, count=12, seed=0, class_names=None):
    """Photos with ground-truth boxes (green) and the predicted box (red), IoU in the title."""
    from sensloc.data import images
    from sensloc.localize.boxes import iou
    plt = _pyplot()
    from matplotlib.patches import Rectangle
    chosen = np.random.default_rng(seed).choice(len(records), size=min(count, len(records)),
                                                replace=False)
    cols = 4
    rows = int(np.ceil(len(chosen) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), constrained_layout=True)
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), chosen):
        record, box = records[i], predicted_boxes[i]
        # A copy decoded at reduced scale (a few hundred pixels suffice for a panel of the
        # grid), drawn over the photo's full size so that the boxes stay in photo pixels.
        width, height = images.image_size(record.path)
        ax.imshow(images.load_image(record.path, min_side=400), extent=(0, width, height, 0))
        for gt in record.boxes:
            ax.add_patch(Rectangle(gt[:2], *(gt[2:] - gt[:2]), fill=False, color="lime", lw=2))
        ax.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, color="red", lw=2))
        name = class_names[record.class_index].split(",")[0] if class_names else record.wnid
        ax.set_title(f"{name}\nIoU {iou(box, record.boxes).max():.2f}", fontsize=9)
    fig.suptitle(f"{title}: ground truth (green), prediction (red)")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_plots(folder, summary, records, photo_boxes, class_names=None):
    """``corloc.png`` and ``examples-<config>.png`` for each non-baseline configuration."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corloc_bars(summary, folder / "corloc.png")
    written = [folder / "corloc.png"]
    for name, boxes in photo_boxes.items():
        if name.startswith("baseline"):
            continue
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        example_grid(records, boxes, name, folder / f"examples-{safe}.png", class_names=class_names)
        written.append(folder / f"examples-{safe}.png")
    return written
