# %% [markdown]
# # 6. All methods on real photos with ground truth
#
# Notebooks 1 to 5 built the pieces: maps (the gradient in notebook 1; guided backpropagation and
# deconvnet in notebook 2; DeepLIFT and integrated gradients in notebook 3; gradient x input,
# SmoothGrad, Grad-CAM, Dwaraknath et al.'s neuron selection and occlusion in notebook 5) and
# protocols that turn maps into boxes (threshold, Khan et al., box regression: notebook 4). Here
# they meet real ImageNet validation photos with their ground-truth boxes, and the library's
# evaluation runner scores every combination with CorLoc.
#
# **You will learn**
#
# 1. how to run a fair comparison: the same photos, the class known (the ground-truth label is
#    explained), every threshold or regression fitted on other photos than those it is scored on
#    (k-fold cross-validation), and baselines that look at no pixel;
# 2. how to read the resulting table, with its bootstrap confidence intervals;
# 3. what the methods' maps and boxes look like on the same photos.
#
# **Questions.** Cells marked **Question** are followed by a **Your answer:** cell; model answers
# are in `tutorials/answers/06_comparison.md`.
#
# **Data.** The comparison needs photos with ground-truth boxes.
#
# * In the project's development set-up the photos come from `imagenet-val-227` (649 ILSVRC2012
#   validation photos with their official boxes, pre-scaled to 227x227) in the shared data folder
#   (`$SENSLOC_SHARED`, else `../shared` next to the repository). It is not downloadable: ImageNet
#   photos are for non-commercial research and education only.
# * **On your own machine**, download the ILSVRC2012 validation images and boxes from
#   <https://image-net.org> (free registration; `ILSVRC2012_img_val.tar`, over 6 GB, and
#   `ILSVRC2012_bbox_val_v3.tgz`), put the photos you want in `FOLDER/images/` and their XML files
#   in `FOLDER/annotations/`, and set the environment variable `SENSLOC_TUTORIAL_DATA=FOLDER`
#   before starting Jupyter. A folder with a `manifest.csv` (columns `file, width, height, wnid,
#   class_index, boxes`; see `localize/datasets.py`) works too.
# * Without either, the notebook falls back to a **tiny demonstration**: three scikit-image photos
#   (the astronaut twice, for two objects) with boxes drawn by hand. Those boxes are illustrative,
#   not ground truth, and four images cannot rank methods: the table then only shows that the
#   pipeline runs.
#
# **Time.** Maps are computed once and cached (`<sensloc cache>/maps`); a second run only re-scores.
# The full version computes, per photo, about 75 backward passes (integrated gradients 32,
# neuron selection 21, SmoothGrad 16, one each for the other maps) and 81 forward passes for
# occlusion; section 2 prints the count, section 3 the time the evaluation took, so time a few
# photos (`SENSLOC_TUTORIAL_IMAGES=20`) before starting all of them. `JOBS` worker processes
# share the photos. `SENSLOC_TUTORIAL_FAST=1` uses 10 photos, 4 integration steps, 4 SmoothGrad
# samples and 16 occluding patches; `SENSLOC_TUTORIAL_IMAGES=N` picks another number of photos.

# %%
import csv
import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from matplotlib.patches import Rectangle
from PIL import Image
from skimage import data

from sensloc import saliency
from sensloc import weights

from sensloc.data import images
from sensloc.localize import boxes
from sensloc.cli.main import open_datasets
from sensloc.evaluation.maps import Dataset, load_maps
from sensloc.evaluation.runner import Config, evaluate
from sensloc.saliency.maps import MapSpec
from sensloc.localize.presets import preset
from sensloc.localize.protocols import RegressionBoxes, ThresholdBoxes

FAST = os.environ.get("SENSLOC_TUTORIAL_FAST", "0") not in ("", "0")
N_IMAGES = int(os.environ.get("SENSLOC_TUTORIAL_IMAGES", 10 if FAST else 0)) or None   # None: all
IG_STEPS, SG_SAMPLES = (4, 4) if FAST else (32, 16)
OCCLUSION = (64, 64) if FAST else (48, 24)          # patch side and stride in pixels (notebook 5)
JOBS = 1 if FAST else max(1, (os.cpu_count() or 1) - 1)

net = weights.load("squeezenet1_0", download=True)  # fetches the 5 MB file once if missing
weight_path = weights.resolve("squeezenet1_0")
print("fast mode" if FAST else "full mode", "|", net, "|", weight_path)

# %% [markdown]
# ## 1. The photos

# %%
def find_dataset():
    """(folder, description) of the first dataset found, or (None, None)."""
    explicit = os.environ.get("SENSLOC_TUTORIAL_DATA")
    if explicit:
        return Path(explicit), f"$SENSLOC_TUTORIAL_DATA ({explicit})"
    # $SENSLOC_SHARED if set (as the test suite does), else the folder next to the repository.
    roots = [os.environ["SENSLOC_SHARED"]] if os.environ.get("SENSLOC_SHARED") else ["../../shared", "../shared"]
    for root in roots:
        folder = Path(root) / "data" / "imagenet-val-227"
        if (folder / "manifest.csv").is_file():
            return folder, f"imagenet-val-227 from the shared folder ({folder.resolve()})"
    return None, None


#: The fallback: scikit-image photos, class indices, and boxes DRAWN BY HAND (illustrative only).
DEMO = [("chelsea", data.chelsea, 285, [(0, 0, 400, 300)]),           # Egyptian cat: the cat's head
        ("coffee", data.coffee, 967, [(76, 16, 480, 392)]),           # espresso: cup and saucer
        ("astronaut-shuttle", data.astronaut, 812, [(350, 0, 466, 290)]),  # space shuttle (the model)
        ("astronaut-helmet", data.astronaut, 518, [(280, 340, 512, 512)])]  # crash helmet


def demo_dataset(folder):
    """Write the demonstration photos and a manifest; return the folder."""
    folder = Path(folder)
    rows = []
    for image_id, load, class_index, hand_boxes in DEMO:
        photo = load()
        Image.fromarray(photo).save(folder / f"{image_id}.png")
        wnid = weights.imagenet_classes()[class_index][0]
        rows.append([f"{image_id}.png", photo.shape[1], photo.shape[0], wnid, class_index,
                     ";".join(",".join(str(v) for v in box) for box in hand_boxes), image_id])
    with open(folder / "manifest.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "width", "height", "wnid", "class_index", "boxes", "image_id"])
        writer.writerows(rows)
    return folder


work = Path(tempfile.mkdtemp(prefix="sensloc-tutorial-"))
folder, description = find_dataset()
DEMONSTRATION = folder is None
if DEMONSTRATION:
    folder = demo_dataset(work)
    description = ("DEMONSTRATION ONLY: 3 scikit-image photos (4 objects) with boxes drawn by hand "
                   "(illustrative, not ground truth); see the Data section above for the real thing")
records = open_datasets([folder])
if N_IMAGES is not None and N_IMAGES < len(records):
    chosen = np.sort(np.random.default_rng(0).choice(len(records), N_IMAGES, replace=False))
    records = [records[i] for i in chosen]
print(f"{len(records)} photos: {description}")

# %% [markdown]
# ## 2. The contenders
#
# Every map method of notebooks 1, 2, 3 and 5 with the threshold protocol of notebook 4 (the union
# of pixels above a fraction of the map's maximum, the fraction tuned on the training folds), and
# four published recipes:
#
# | contender | map (introduced in) | boxes (notebook 4) |
# |---|---|---|
# | Grad-CAM (Selvaraju et al.) | Grad-CAM at `fire9`, upsampled (notebook 5) | largest component above a tuned fraction |
# | Khan et al. | DeepLIFT, zero reference (notebook 3) and guided backprop (notebook 2) | smoothed, cut, border mask, geometric mean, union box |
# | Dwaraknath et al. | neuron selection, top 20 `fire9` neurons, guided (notebook 5) | union of pixels above a tuned fraction |
# | Ebrahimpour & Noelle | the gradient, `max_c |.|` (notebook 1) | ridge regression from a 16 x 16 grid |
#
# Occlusion's map is signed (hiding a patch can raise the score); it is reduced by summing its
# (equal) channels, and the threshold protocol keeps its positive part. The evaluation adds two
# baselines that look at no pixel: the whole image, and a box of the training folds' mean size
# centred in the image.

# %%
maps_of = {
    "gradient": MapSpec.make("gradient", "max_abs"),
    "gradient x input": MapSpec.make("gradient_x_input", "max_abs"),
    "guided backprop": MapSpec.make("guided", "max_abs"),
    "deconvnet": MapSpec.make("deconvnet", "max_abs"),
    "DeepLIFT (zero reference)": MapSpec.make("deeplift", "sum", reference="zero"),
    f"integrated gradients ({IG_STEPS} steps)": MapSpec.make("integrated_gradients", "max_abs", steps=IG_STEPS),
    f"SmoothGrad ({SG_SAMPLES} samples)": MapSpec.make("smoothgrad", "max_abs", samples=SG_SAMPLES),
    f"occlusion ({OCCLUSION[0]} px, stride {OCCLUSION[1]})":
        MapSpec.make("occlusion", "sum", window=OCCLUSION[0], stride=OCCLUSION[1]),
}
K = min(5, len(records))                            # cross-validation folds
smallest_training_set = len(records) - int(np.ceil(len(records) / K))
configs = [Config(f"{label}: threshold", factory=lambda spec=spec: ThresholdBoxes(spec, mode="union"))
           for label, spec in maps_of.items()]
configs += [
    Config("Grad-CAM (fire9): threshold", factory=lambda: preset("grad_cam", net.name)),
    Config("Khan et al.: DeepLIFT x guided", factory=lambda: preset("khan", net.name)),
    Config("Dwaraknath et al.: neuron selection", factory=lambda: preset("dwaraknath", net.name)),
    Config("Ebrahimpour & Noelle: box regression",
           factory=lambda: RegressionBoxes([maps_of["gradient"]], grid_sizes=16,
                                           k=max(2, min(5, smallest_training_set)))),
]
for config in configs:
    protocol = config.factory()
    print(f"{config.name:42s} {protocol.kind:10s} maps: {', '.join(s.name for s in protocol.map_specs)}")


def passes(spec):
    """(backward, forward-only) passes a map kind costs per photo."""
    options = dict(spec.options)
    if spec.method == "occlusion":
        height, width = net.preprocessing.input_size
        return 0, (len(saliency.patch_starts(height, options["window"], options["stride"]))
                   * len(saliency.patch_starts(width, options["window"], options["stride"])))
    return {"integrated_gradients": options.get("steps", 1), "smoothgrad": options.get("samples", 1),
            "neuron_selection": options.get("k", 1) + 1}.get(spec.method, 1), 0


all_specs = list(dict.fromkeys(s for c in configs for s in c.factory().map_specs))
backward, forward = np.sum([passes(spec) for spec in all_specs], axis=0)
print(f"{len(all_specs)} map kinds per photo: {backward} backward passes and {forward} forward-only passes")

# %% [markdown]
# ## 3. The evaluation
#
# `sensloc.evaluation.runner.evaluate` computes every map kind once per photo (cached on disk), fits each
# protocol on $k - 1$ folds and predicts the held-out fold, maps boxes back to the photo's pixels,
# and scores CorLoc against all the photo's ground-truth boxes. The explained class is the
# ground-truth class ("CorLoc, GT-known"); the top-1 column also demands that the network's top-1
# class is right.

# %%
tic = time.time()
summary, photo_boxes = evaluate(weight_path, records, configs, weights.default_cache_dir() / "maps",
                                work / "results.csv", k=K, seed=0, jobs=JOBS, progress=not FAST)
print(f"evaluation of {len(records)} photos: {time.time() - tic:.0f} s (maps read from the cache "
      f"where an earlier run computed them)")
if DEMONSTRATION:
    display(Markdown("**Demonstration data: boxes drawn by hand, four images. These numbers rank "
                     "nothing; they only show that the pipeline runs.**"))
display(Markdown(summary.markdown()))
print(f"per-image results (boxes, IoU, hits): {work / 'results.csv'}")

# %% [markdown]
# ## 4. The figure
#
# CorLoc with its 95% bootstrap interval, best first; the baselines in grey.

# %%
names = sorted(summary.rows, key=lambda n: summary.rows[n]["corloc"])
values = np.array([summary.rows[n]["corloc"] for n in names]) * 100
intervals = np.array([summary.rows[n]["ci95"] for n in names]) * 100
colours = ["0.6" if n.startswith("baseline") else "tab:blue" for n in names]
fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.4), constrained_layout=True)
ax.barh(names, values, xerr=[values - intervals[:, 0], intervals[:, 1] - values], color=colours, capsize=3)
for y, v in enumerate(values):  # the values in a column of their own, right of the axis's 100%
    ax.text(103, y, f"{v:.0f}%", va="center")
ax.set_xlim(0, 112)
ax.set_xticks(range(0, 101, 20))
ax.set_xlabel("CorLoc, ground-truth class known (%), with 95% bootstrap interval")
title = f"SqueezeNet 1.0 on {summary.n} photos ({K}-fold cross-validation)"
ax.set_title(title + ("\nDEMONSTRATION: hand-drawn boxes, not ground truth" if DEMONSTRATION else ""))
plt.show()

# %% [markdown]
# What the methods see on one photo: every map kind of the first photo, read back from the cache,
# with the photo's ground-truth class in the titles. Each map has its own colour scale, clipped
# at the 99.5th percentile of its absolute values (a few extreme pixels would otherwise wash out
# the rest); signed maps (DeepLIFT's channel sum, occlusion) in red and blue around zero.

# %%
specs = all_specs
first = records[0]
maps, logits = load_maps(net, Dataset([first]), specs, weights.default_cache_dir() / "maps")
class_name = net.class_names[first.class_index].split(",")[0]
columns = 4
rows = int(np.ceil((len(specs) + 1) / columns))
fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4 * rows), constrained_layout=True)
axes = axes.ravel()
photo = images.load_image(first.path)
axes[0].imshow(photo)
for gt in first.boxes:
    axes[0].add_patch(Rectangle(gt[:2], *(gt[2:] - gt[:2]), fill=False, color="lime", lw=2))
axes[0].set_title(f"{first.image_id}\nclass {first.class_index}: {class_name}", fontsize=9)
for ax, spec in zip(axes[1:], specs):
    heat = maps[spec][0]
    limit = np.percentile(np.abs(heat), 99.5) or np.abs(heat).max() or 1.0
    signed = heat.min() < 0
    image = ax.imshow(heat, cmap="RdBu_r" if signed else "inferno", vmin=-limit if signed else 0, vmax=limit)
    ax.set_title(f"{spec.name}\nclass {class_name}" + ("" if heat.any() else " (all zero)"), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="signed value" if signed else "value (clipped at 99.5th pct)")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# And the boxes: ground truth in green, the prediction in red, with its IoU, for a few photos, the
# gradient and three of the published recipes.

# %%
shown_configs = ["gradient: threshold", "Khan et al.: DeepLIFT x guided",
                 "Ebrahimpour & Noelle: box regression", "Grad-CAM (fire9): threshold"]
shown_photos = list(range(min(4, len(records))))
fig, axes = plt.subplots(len(shown_photos), len(shown_configs),
                         figsize=(3.6 * len(shown_configs), 3.6 * len(shown_photos)), constrained_layout=True)
axes = np.atleast_2d(axes)
for row, i in enumerate(shown_photos):
    record = records[i]
    photo = images.load_image(record.path)
    label = net.class_names[record.class_index].split(",")[0]
    for col, config_name in enumerate(shown_configs):
        ax = axes[row, col]
        ax.imshow(photo)
        for gt in record.boxes:
            ax.add_patch(Rectangle(gt[:2], *(gt[2:] - gt[:2]), fill=False, color="lime", lw=2))
        box = photo_boxes[config_name][i]
        ax.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, color="red", lw=2))
        ax.set_title(f"{config_name.split(':')[0]}\n{label}: IoU {boxes.best_iou(box, record.boxes):.2f}",
                     fontsize=9)
        ax.axis("off")
fig.suptitle("ground truth (green), prediction (red)" + (" — DEMONSTRATION boxes" if DEMONSTRATION else ""))
plt.show()

# %% [markdown]
# ## 5. Reading the results
#
# What the table says on *these* photos, computed from it rather than assumed: the best baseline,
# the contenders whose whole 95% interval lies above that baseline's upper end, how wide the
# intervals are, and a check of what notebook 2 predicted for deconvnet (how many of its maps are
# identically zero? An all-zero map has no hot pixel, and its box is the whole image).

# %%
rows = summary.rows
best_baseline = max((n for n in rows if n.startswith("baseline")), key=lambda n: rows[n]["corloc"])
ceiling = rows[best_baseline]["ci95"][1]
above = [n for n in rows if not n.startswith("baseline") and rows[n]["ci95"][0] > ceiling]
widths = np.array([rows[n]["ci95"][1] - rows[n]["ci95"][0] for n in rows]) * 100

deconvnet_spec = maps_of["deconvnet"]
deconvnet_maps, _ = load_maps(net, Dataset(records), [deconvnet_spec], weights.default_cache_dir() / "maps")
zero = np.abs(deconvnet_maps[deconvnet_spec]).reshape(len(records), -1).max(axis=1) == 0
whole = np.array(photo_boxes["baseline: whole image"], dtype=float)
deconvnet_whole = np.all(np.abs(np.array(photo_boxes["deconvnet: threshold"], dtype=float) - whole) <= 1, axis=1)
display(Markdown("\n".join([
    f"* Best baseline: **{best_baseline}**, CorLoc {100 * rows[best_baseline]['corloc']:.1f}% "
    f"(95% interval up to {100 * ceiling:.1f}%).",
    f"* Contenders whose whole interval lies above it: "
    f"{', '.join(above) if above else '**none** (on this many photos no method is separated from the baselines)'}.",
    f"* Interval widths: median {np.median(widths):.0f} points, from {widths.min():.0f} to "
    f"{widths.max():.0f}, on {summary.n} photos.",
    f"* Deconvnet: {zero.sum()} of {len(records)} maps identically zero; {deconvnet_whole.sum()} of "
    f"{len(records)} of its boxes are the whole image (within a pixel); CorLoc "
    f"{100 * rows['deconvnet: threshold']['corloc']:.1f}% against the whole image's "
    f"{100 * rows['baseline: whole image']['corloc']:.1f}%."])))

# %% [markdown]
# * **Baselines first.** A method is only interesting if its interval lies clearly above the
#   baselines'. In `imagenet-val-227` many objects are large (and the photos were squashed to
#   227x227): on the 692 development photos the README's table ("Measured") gives the whole image
#   44.5% and the centred box 49.4%.
# * **The intervals are wide.** The widths above shrink roughly as $1/\sqrt{n}$: with the 10 photos
#   of the fast mode they span tens of points, with several hundred photos several points. Rank
#   methods only where intervals separate.
# * **Deconvnet.** Notebook 2 showed that its signal can die before reaching the pixels on
#   SqueezeNet; the count above says how often on these photos. Where the map is all zero, the box
#   is the whole image, and on those photos deconvnet scores exactly what the whole-image baseline
#   scores.
# * **Learned versus hand-made.** The regression learns from the training folds where boxes tend
#   to be, given the map; the threshold protocols only learn one number. Compare them on the full
#   set.

# %% [markdown]
# **Question 6.1.** Every threshold fraction and the regression's weights are fitted on the other
# folds, never on the photos they are scored on. What would happen to the table's numbers if they
# were fitted on all photos, and why does it matter more for the regression than for the
# threshold protocols?

# %% [markdown]
# **Your answer:**

# %% [markdown]
# **Question 6.2.** A method with a true CorLoc of 60%: roughly how wide is the 95% interval of
# its measured CorLoc on 10 photos, and on 649? (The bootstrap interval is close to the binomial
# one, $\pm 1.96 \sqrt{p (1 - p) / n}$.) Compare with the widths printed above.

# %% [markdown]
# **Your answer:**

# %% [markdown]
# ## Summary
#
# * A fair comparison fixes the photos, explains the ground-truth class, fits every free
#   parameter on other photos (k-fold cross-validation) and reports baselines and intervals.
# * `sensloc.evaluation.runner.evaluate` does all of it from a list of records and protocol factories,
#   caching the expensive maps; `sensloc evaluate` is the same from the command line.
# * The numbers of the fast mode and of the demonstration data are only a smoke test; run the
#   full version on real ground truth for conclusions.
# * Each method's formula and a check of it by hand are in notebooks 1-3 and 5; the code is in
#   `saliency/methods.py` (maps) and `localize/protocols/` (boxes).
#
# ## Exercises
#
# 1. Add the `"l2"` and `"sum"` channel reductions of the gradient as two more threshold
#    contenders (`MapSpec.make("gradient", "l2")`). Which reduction boxes best?
# 2. Replace the union by the largest connected component (`ThresholdBoxes(spec, mode="largest")`)
#    for every map. Where does it help?
# 3. Fit the box regression on two map kinds at once (`RegressionBoxes([gradient, guided])`).
# 4. Compare CorLoc (GT-known) with the top-1 variant. Which photos does the network misclassify,
#    and are they the ones the boxes miss?
# 5. Run the same comparison from the command line:
#    `sensloc evaluate DATASET --preset khan ebrahimpour gradient --cv 5 --plot figures/`.
