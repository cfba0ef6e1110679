"""Figures of an evaluation: CorLoc per configuration and against object size, example photos
with their boxes (random, and each configuration's best and worst), and, with ``--metrics``,
the MaxBoxAcc threshold curves and the deletion and insertion curves."""
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


def example_grid(records, predicted_boxes, title, path, count=12, seed=0, class_names=None,
                 chosen=None):
    """Photos with ground-truth boxes (green) and the predicted box (red), IoU in the title:
    ``count`` photos drawn at random (seeded), or the photos of the indices ``chosen``."""
    from sensloc.data import images
    from sensloc.localize.boxes import iou
    plt = _pyplot()
    from matplotlib.patches import Rectangle
    if chosen is None:
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


#: Object-size bins: the largest ground-truth box's share of the photo (the README's bins).
SIZE_BINS = (0.0, 0.1, 0.25, 0.5, 1.0)


def object_sizes(records):
    """(N,) share of each photo covered by its largest ground-truth box, ``w h / (W H)``."""
    from sensloc.localize.boxes import box_area
    return np.array([box_area(np.reshape(r.boxes, (-1, 4))).max() / (r.width * r.height)
                     for r in records])


def corloc_by_size(records, photo_boxes, path):
    """CorLoc (IoU >= 0.5) of every configuration in each object-size bin (:data:`SIZE_BINS`),
    one line per configuration, the number of photos of each bin under the axis."""
    from sensloc.localize.metrics import hits
    plt = _pyplot()
    sizes = object_sizes(records)
    bins = np.clip(np.digitize(sizes, SIZE_BINS[1:-1]), 0, len(SIZE_BINS) - 2)
    counts = np.bincount(bins, minlength=len(SIZE_BINS) - 1)
    truth = [r.boxes for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for name, boxes in photo_boxes.items():
        found = hits(np.array(boxes), truth)
        values = [100 * found[bins == b].mean() if counts[b] else np.nan
                  for b in range(len(counts))]
        style = dict(color="0.6", ls="--") if name.startswith("baseline") else {}
        ax.plot(range(len(counts)), values, marker="o", label=name, **style)
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels([f"{100 * lo:g}-{100 * hi:g}%\n({c} photos)"
                        for lo, hi, c in zip(SIZE_BINS[:-1], SIZE_BINS[1:], counts)])
    ax.set_xlabel("largest ground-truth box, share of the photo")
    ax.set_ylabel("CorLoc (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("CorLoc against object size")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def best_and_worst(records, predicted_boxes, count=4):
    """Indices of the ``count`` photos of highest and of lowest IoU (best first, worst last;
    ties in photo order)."""
    from sensloc.localize.boxes import best_ious
    overlap = best_ious(np.array(predicted_boxes), [r.boxes for r in records])
    order = np.argsort(-overlap, kind="stable")
    count = min(count, len(order) // 2)
    return np.concatenate([order[:count], order[len(order) - count:]])


def threshold_curves(metrics, path):
    """MaxBoxAcc's curve: box accuracy (IoU >= 0.5, largest region) at each threshold of the
    normalized map, per row of the metrics (presets solid, raw methods dashed)."""
    from sensloc.localize.wsol_metrics import CAM_THRESHOLDS
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for name, curves in metrics.curves.items():
        curve = curves.get("maxboxacc_by_threshold")
        if curve is not None:
            ax.plot(CAM_THRESHOLDS, 100 * np.array(curve), label=name,
                    ls="--" if name.startswith("method: ") else "-")
    ax.set_xlabel("threshold on the map normalized to [0, 1]")
    ax.set_ylabel("box accuracy, IoU >= 0.5 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    ax.set_title(f"MaxBoxAcc threshold curves, {metrics.images} photos")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def deletion_insertion_curves(metrics, path):
    """Mean class probability against the share of pixels deleted / inserted, per row, with
    the AUC in the legend."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, mode in zip(axes, ("deletion", "insertion")):
        for name, curves in metrics.curves.items():
            if mode in curves:
                values = np.array(curves[mode])
                ax.plot(np.linspace(0, 1, len(values)), values,
                        label=f"{name} ({metrics.rows[name][mode]:.3f})",
                        ls="--" if name.startswith("method: ") else "-")
        ax.set_xlabel(f"share of pixels {'deleted' if mode == 'deletion' else 'inserted'}, "
                      "most salient first")
        ax.set_ylabel("probability of the class")
        ax.set_title(f"{mode} ({metrics.network_images} photos), AUC in brackets")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_plots(folder, summary, records, photo_boxes, class_names=None):
    """``corloc.png``, ``corloc-by-size.png``, and ``examples-<config>.png`` (random photos) and
    ``best-worst-<config>.png`` for each non-baseline configuration; with the summary's
    standard metrics also ``maxboxacc-thresholds.png`` and ``deletion-insertion.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corloc_bars(summary, folder / "corloc.png")
    corloc_by_size(records, photo_boxes, folder / "corloc-by-size.png")
    written = [folder / "corloc.png", folder / "corloc-by-size.png"]
    for name, boxes in photo_boxes.items():
        if name.startswith("baseline"):
            continue
        path = folder / f"examples-{_safe(name)}.png"
        example_grid(records, boxes, name, path, class_names=class_names)
        written.append(path)
        path = folder / f"best-worst-{_safe(name)}.png"
        example_grid(records, boxes, f"{name}, best (top row) and worst (bottom row)", path,
                     class_names=class_names, chosen=best_and_worst(records, boxes))
        written.append(path)
    metrics = getattr(summary, "metrics", None)
    if metrics is not None:
        if any("maxboxacc_by_threshold" in c for c in metrics.curves.values()):
            threshold_curves(metrics, folder / "maxboxacc-thresholds.png")
            written.append(folder / "maxboxacc-thresholds.png")
        if any("deletion" in c or "insertion" in c for c in metrics.curves.values()):
            deletion_insertion_curves(metrics, folder / "deletion-insertion.png")
            written.append(folder / "deletion-insertion.png")
    return written
