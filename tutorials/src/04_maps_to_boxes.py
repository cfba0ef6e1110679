# %% [markdown]
# # 4. From heat maps to boxes
#
# A heat map says *where* the evidence is; a localization benchmark wants *one box*. This notebook
# builds the three ways the library turns maps into boxes, and the numbers that score them.
#
# **You will learn**
#
# 1. how a box is scored: intersection over union (IoU) and CorLoc, with a bootstrap interval;
# 2. Simonyan et al.'s protocol: threshold the map, take connected components, box them;
# 3. Khan et al.'s recipe: smoothing, a cut at the mean, a border mask, mixing two maps;
# 4. Ebrahimpour & Noelle's closed-form least-squares box regression: grid features, the normal
#    equations, ridge regularization and choosing its strength by cross-validation.
#
# **Set-up** as in notebook 1 (the SqueezeNet weights are fetched on first use). Section 4 uses
# synthetic maps with known boxes, so that the mechanics are visible without a dataset; notebook 5
# fits the same regression on real maps of real ImageNet photos. `SENSLOC_TUTORIAL_FAST=1` uses
# fewer synthetic maps.
#
# **Questions.** Cells marked **Question** ask about what the notebook just computed; write your
# answer in the **Your answer** cell below each. Model answers for teachers are in
# `tutorials/answers/04_maps_to_boxes.md`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from scipy import ndimage
from skimage import data

from sensloc import saliency
from sensloc import weights
from sensloc.data import images
from sensloc.localize import boxes, metrics, protocols, regression
from sensloc.evaluation.runner import photo_to_input
from sensloc.saliency.maps import MapSpec
from sensloc.saliency import postprocess

FAST = os.environ.get("SENSLOC_TUTORIAL_FAST", "0") not in ("", "0")
np.set_printoptions(precision=3, suppress=True)

net = weights.load("squeezenet1_0", download=True)  # fetches the 5 MB file once if missing
prep = net.preprocessing
print("fast mode" if FAST else "full mode", "|", net)


def draw(ax, box, color, label=None, **style):
    """Draw a box (xmin, ymin, xmax, ymax) in continuous pixel coordinates."""
    xmin, ymin, xmax, ymax = box
    ax.add_patch(Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin, fill=False,
                           color=color, lw=2.5, label=label, **style))

# %% [markdown]
# A box is `(xmin, ymin, xmax, ymax)` in *continuous* pixel coordinates: pixel `(row i, column j)`
# covers the unit square $[j, j+1) \times [i, i+1)$, so the box of a set of pixels is
# `(min col, min row, max col + 1, max row + 1)` and its area has no "+1" anywhere
# (`localize/boxes.py`). `imshow` puts pixel *centres* at integers, hence the half-pixel shift in
# `draw`.
#
# ## 1. Scoring a box: IoU and CorLoc
#
# Two boxes $A$ and $B$ overlap by
#
# $$\mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|} = \frac{I}{\mathrm{area}\,A + \mathrm{area}\,B - I}$$
#
# (docstring: `|A n B| / |A u B| = I / (area A + area B - I)`), with $I$ the area of the
# intersection. A prediction *hits* image $n$ when it overlaps one of the image's ground-truth boxes
# enough, `hit_n = [max_k IoU(pred_n, gt_n[k]) >= threshold]` with threshold 0.5 (the PASCAL
# criterion), and **CorLoc** is the fraction of hits, `CorLoc = (1/N) sum_n hit_n`.

# %%
A = np.array([10.0, 10.0, 50.0, 40.0])
B = np.array([30.0, 20.0, 70.0, 60.0])
width = min(A[2], B[2]) - max(A[0], B[0])
height = min(A[3], B[3]) - max(A[1], B[1])
I = max(width, 0) * max(height, 0)
by_hand = I / (boxes.box_area(A) + boxes.box_area(B) - I)
print(f"I = {I}, area A = {boxes.box_area(A)}, area B = {boxes.box_area(B)}: "
      f"IoU by hand {by_hand:.4f}, boxes.iou {boxes.iou(A, B):.4f}")
assert I > 0 and abs(boxes.iou(A, B) - by_hand) < 1e-12 * by_hand

predictions = np.array([[0, 0, 40, 40], [10, 10, 30, 30], [50, 50, 60, 60]], dtype=float)
ground_truth = [np.array([[0, 0, 40, 48]]), np.array([[0, 0, 40, 40], [12, 8, 32, 30]]),
                np.array([[0, 0, 20, 20]])]
print("best IoU per image:", [round(boxes.best_iou(p, g), 3) for p, g in zip(predictions, ground_truth)])
print("hits:", metrics.hits(predictions, ground_truth), " CorLoc:", metrics.corloc(predictions, ground_truth))
assert metrics.hits(predictions, ground_truth).tolist() == [True, True, False]    # 0.833, 0.75, 0 against 0.5

# %% [markdown]
# CorLoc on a few hundred images is a noisy number. `metrics.bootstrap_ci` gives a percentile
# bootstrap interval: resample the images with replacement, recompute CorLoc, take the 2.5% and
# 97.5% quantiles. With 100 images and a CorLoc of 0.6, the 95% interval is about ten points wide
# on either side: differences of a few points between methods mean little on small sets.

# %%
for n in (20, 100, 600):
    hit_vector = np.arange(n) < 0.6 * n
    low, high = metrics.bootstrap_ci(hit_vector)
    print(f"{n:4d} images, CorLoc 0.60: 95% interval [{low:.2f}, {high:.2f}]")

# %% [markdown]
# **Question 4.1.** The interval narrows as the number of images grows. By what factor does it narrow
# from 100 to 600 images, and what factor does the standard error of a proportion,
# $\sqrt{p(1-p)/N}$, predict? Roughly how many images would you need before a CorLoc of 0.60 and
# one of 0.65 have 95% intervals that do not overlap?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## 2. Threshold and connected components (Simonyan et al.)
#
# Take the sensitivity map of the coffee photo, keep the hot pixels `m[i, j] >= fraction * max m`,
# and box either all of them (`"union"`) or the largest 8-connected component (`"largest"`,
# `scipy.ndimage.label` with a 3x3 structure of ones). The green box is drawn **by hand** around the
# cup and saucer, for illustration only: it is not an ImageNet annotation. The map is shown on its
# full colour scale (no clipping) here, because the threshold is a fraction of its maximum.

# %%
photo = data.coffee()
resized = images.resize_image(photo, prep.input_size, prep.resize)
x = prep.apply(resized)[None]
t = int(net(x).argmax())
name = net.class_names[t].split(",")[0]
hand_box = photo_to_input([76, 16, 480, 392], (photo.shape[1], photo.shape[0]), prep)[0]

gradient_map = saliency.sensitivity_map(net, x, target=t)[0]
smoothed = postprocess.gaussian_smooth(gradient_map, 3)
fraction = 0.3
mask = smoothed >= fraction * smoothed.max()
labels, count = ndimage.label(mask, structure=boxes.EIGHT_CONNECTED)
largest = boxes.box_from_mask(mask, "largest", heatmap=smoothed)
union = boxes.box_from_mask(mask, "union")
assert np.array_equal(union, boxes.boxes_from_heatmap(smoothed, fraction, "union"))

fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), constrained_layout=True)
image = axes[0].imshow(smoothed, cmap="inferno")
axes[0].set_title(f"sensitivity map, smoothed (sigma 3 px)\nclass {t}: {name}")
fig.colorbar(image, ax=axes[0], fraction=0.046, label="max_c |df/dx_c|, smoothed")
image = axes[1].imshow(np.ma.masked_equal(labels, 0), cmap="tab20", interpolation="nearest")
axes[1].set_title(f"{count} connected components of m >= {fraction} max m")
fig.colorbar(image, ax=axes[1], fraction=0.046, label="component label")
axes[2].imshow(resized)
draw(axes[2], hand_box, "lime", "hand-drawn box (illustrative)")
draw(axes[2], largest, "red", f"largest component, IoU {boxes.iou(largest, hand_box):.2f}")
draw(axes[2], union, "cyan", f"union, IoU {boxes.iou(union, hand_box):.2f}", ls="--")
axes[2].legend(loc="lower left", fontsize=8)
axes[2].set_title(f"boxes at fraction {fraction}")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# The threshold decides everything: too low and the union box grows to the whole image, too high
# and it shrinks to the hottest speck. The protocol therefore tunes `fraction` on training images
# (`protocols.ThresholdBoxes`), never on the images it is scored on.

# %%
fractions = [0.1, 0.2, 0.3, 0.5, 0.7]
fig, axes = plt.subplots(1, len(fractions), figsize=(3.4 * len(fractions), 3.8), constrained_layout=True)
for ax, f in zip(axes, fractions):
    box = boxes.boxes_from_heatmap(smoothed, f, "union")
    ax.imshow(resized)
    draw(ax, hand_box, "lime")
    draw(ax, box, "red")
    ax.set_title(f"fraction {f}: IoU {boxes.iou(box, hand_box):.2f}")
    ax.axis("off")
fig.suptitle(f"Union boxes of the smoothed sensitivity map ({name}); green: hand-drawn box")
plt.show()

# %% [markdown]
# **Question 4.2.** On this photo the lowest fraction gives the best IoU with the hand-drawn box.
# Why would choosing the fraction this way (on the image being scored) overstate how well the
# protocol localizes? And why does a low fraction do well on *this* photo in particular?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## 3. Khan et al.'s recipe
#
# Khan et al. combine two maps, DeepLIFT (summed over channels, which keeps its sign) and guided
# backpropagation (`max_c |a|`). Each goes through `protocols.khan_heat`, whose docstring reads:
# `m <- max(m, 0)`, `m <- m / max m`, Gaussian smoothing by `sigma` pixels, `m <- m / max m`, values
# below the map's own mean set to 0, then multiplied by a border mask. Each step is a function of
# `saliency.postprocess`:
#
# * smoothing: `m'[i, j] = sum_{k, l} G_sigma(k) G_sigma(l) m[i - k, j - l]`, i.e.
#   $m'_{ij} = \sum_{k,l} G_\sigma(k)\, G_\sigma(l)\, m_{i-k,\,j-l}$ (`gaussian_smooth`);
# * the cut: `m * [m >= mean(m)]` (`zero_below_mean`);
# * the border mask: along a side of length $L$, a pixel whose centre is $d$ pixels from the nearer
#   edge gets `p = e + (1 - e) * r(min(d / (f L), 1))`, with edge weight $e$, band width $f$ and
#   $r(t) = t$; the 2-D mask is `mask[i, j] = min(p_row[i], p_col[j])` (`border_mask`). Objects
#   are rarely cut by the frame, while saliency maps often light up along it;
# * mixing: the geometric mean `a**w * b**(1 - w)` with $w = 0.5$, $\sqrt{ab}$: hot only where
#   both maps are hot (`mix`).

# %%
deeplift_map = postprocess.reduce_channels(saliency.deeplift(net, x, target=t, reference="zero"), "sum")[0]
guided_map = postprocess.reduce_channels(saliency.guided_backprop(net, x, target=t), "max_abs")[0]
sigma, band, edge = 4.0, 0.1, 0.5


def khan_steps(m):
    """The steps of khan_heat, one at a time."""
    steps = {"positive part": postprocess.positive_part(m)}
    steps["normalized"] = postprocess.normalize(steps["positive part"])
    steps["smoothed, normalized"] = postprocess.normalize(postprocess.gaussian_smooth(steps["normalized"], sigma))
    steps["cut below mean"] = postprocess.zero_below_mean(steps["smoothed, normalized"])
    steps["border mask"] = postprocess.apply_border_mask(steps["cut below mean"], band, edge)
    return steps


steps_a, steps_b = khan_steps(deeplift_map), khan_steps(guided_map)
assert steps_a["border mask"].max() > 0.5        # not an empty map: the comparison below can fail
assert np.allclose(steps_a["border mask"], protocols.khan_heat(deeplift_map[None], True, sigma, band, edge)[0])
mixed = postprocess.mix(steps_a["border mask"], steps_b["border mask"], "geometric_mean")

fig, axes = plt.subplots(2, 5, figsize=(19, 7.6), constrained_layout=True)
for row, (label, steps) in enumerate([("DeepLIFT (sum)", steps_a), ("guided (max |.|)", steps_b)]):
    for ax, (step, heat) in zip(axes[row], steps.items()):
        # Before smoothing, a few pixels would set the colour scale and paint the rest black: clip
        # those panels at their 99th percentile; the smoothed ones are normalized to [0, 1].
        clipped = step in ("positive part", "normalized")
        image = ax.imshow(heat, cmap="inferno", vmin=0, vmax=np.percentile(heat, 99) if clipped else 1)
        ax.set_title(f"{label}: {step}" + ("\n(clipped at 99th percentile)" if clipped else ""), fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, extend="max" if clipped else "neither")
        ax.axis("off")
fig.suptitle(f"Khan et al.'s steps on the coffee photo, class {name}")
plt.show()

# %%
khan = protocols.KhanBoxes(MapSpec.make("deeplift", "sum", reference="zero"), MapSpec.make("guided", "max_abs"),
                           fraction=0.1)
maps = {khan.map_specs[0]: deeplift_map[None], khan.map_specs[1]: guided_map[None]}
assert np.allclose(khan.heat(maps)[0], mixed)
khan_box = khan.predict(maps)[0]

fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), constrained_layout=True)
image = axes[0].imshow(postprocess.border_mask(mixed.shape, band, edge), cmap="viridis", vmin=0, vmax=1)
axes[0].set_title(f"border mask: e = {edge}, f = {band}")
fig.colorbar(image, ax=axes[0], fraction=0.046, label="weight")
image = axes[1].imshow(mixed, cmap="inferno")
axes[1].set_title("geometric mean of the two maps")
fig.colorbar(image, ax=axes[1], fraction=0.046, label="sqrt(a b)")
axes[2].imshow(resized)
draw(axes[2], hand_box, "lime", "hand-drawn box (illustrative)")
draw(axes[2], khan_box, "red", f"Khan, union at 0.1 max: IoU {boxes.iou(khan_box, hand_box):.2f}")
axes[2].legend(loc="lower left", fontsize=8)
axes[2].set_title(f"class {name}")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 4. Closed-form least-squares box regression (Ebrahimpour & Noelle)
#
# Instead of hand-made rules, *learn* a linear map from a heat map to the box. Each map is averaged
# onto a coarse $n \times n$ grid and normalized, `x = g / sum(g)`: $x_{cd}$ is the fraction of the
# map's heat in cell $(c, d)$ (`regression.grid_features`). The target is the box normalized by the
# image size, `(xmin/W, ymin/H, xmax/W, ymax/H)`, and the prediction is linear, `y = [x, 1] W`.
#
# To see the mechanics we use **synthetic maps** whose true boxes we know: speckled heat that is
# strongest in the middle of a random box, plus background speckle and a random distractor blob.

# %%
def synthetic_maps(n, size=64, seed=0):
    """n synthetic heat maps (n, size, size) and their true boxes (one (1, 4) array each)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    maps, truth = np.zeros((n, size, size)), []
    for i in range(n):
        w, h = rng.uniform(0.25, 0.8, 2) * size
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        inside = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
        core = np.exp(-((xx - x0 - w / 2) / (0.35 * w)) ** 2 - ((yy - y0 - h / 2) / (0.35 * h)) ** 2)
        speckle = rng.random((size, size)) * (rng.random((size, size)) < 0.4)
        dx, dy = rng.uniform(0, size, 2)
        distractor = np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / (2 * (size / 12) ** 2))
        maps[i] = speckle * (core * inside + 0.15) + 0.5 * rng.random() * distractor * rng.random((size, size))
        truth.append(np.array([[x0, y0, x0 + w, y0 + h]]))
    return maps, truth


n_images = 200 if FAST else 800
maps_all, truth_all = synthetic_maps(n_images)
sizes = np.tile([64.0, 64.0], (n_images, 1))
train, test = np.arange(n_images) < 0.75 * n_images, np.arange(n_images) >= 0.75 * n_images
grid = 8
X = regression.grid_features(maps_all, grid)
Y = regression.target_boxes(truth_all, sizes)
print(f"{n_images} maps -> features X {X.shape}, targets Y {Y.shape}; every row of X sums to",
      np.unique(X.sum(axis=1).round(12)))

fig, axes = plt.subplots(1, 4, figsize=(16, 4), constrained_layout=True)
for ax, i in zip(axes[:2], (0, 1)):
    image = ax.imshow(maps_all[i], cmap="inferno")
    draw(ax, truth_all[i][0], "lime")
    ax.set_title(f"synthetic map {i}, true box in green")
    fig.colorbar(image, ax=ax, fraction=0.046)
for ax, i in zip(axes[2:], (0, 1)):
    image = ax.imshow(X[i].reshape(grid, grid), cmap="inferno")
    ax.set_title(f"its {grid}x{grid} features x = g / sum(g)")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the heat")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ### The normal equations
#
# With $X_1 = [X, 1]$ (a column of ones appended for the bias), least squares minimizes
# $\|X_1 W - Y\|^2$, and setting the gradient to zero gives the *normal equations*
# $X_1^T X_1 W = X_1^T Y$. The ridge version adds a penalty on the weights, not on the bias:
# the objective `||[X, 1] W - Y||^2 + lam ||W_without_bias||^2`, solved in closed form by
#
# $$W = (X_1^T X_1 + \lambda I')^{-1} X_1^T Y$$
#
# (docstring: `W = (X1^T X1 + lam I')^-1 X1^T Y`), with $I'$ the identity with a 0 in the bias
# position. `regression.fit_ridge` solves it by a Cholesky factorization; here is the same by hand:

# %%
lam = 1e-3
X1 = np.hstack([X[train], np.ones((train.sum(), 1))])
I_prime = np.eye(X1.shape[1])
I_prime[-1, -1] = 0
W_by_hand = np.linalg.solve(X1.T @ X1 + lam * I_prime, X1.T @ Y[train])
W_library = regression.fit_ridge(X[train], Y[train], lam)
W_error = np.abs(W_by_hand - W_library).max() / np.abs(W_by_hand).max()
print("W has shape", W_library.shape, "(features + bias, 4 corners); largest |W|",
      f"{np.abs(W_by_hand).max():.2f}; relative error by hand vs library {W_error:.1e}")
assert np.abs(W_by_hand).max() > 0.1 and W_error < 1e-6

eigenvalues, eigenvectors = np.linalg.eigh(X1.T @ X1)
print(f"eigenvalues of X1^T X1: smallest {eigenvalues[0]:.1e}, largest {eigenvalues[-1]:.1e}")
null_vector = -eigenvectors[:, 0] / eigenvectors[-1, 0]      # rescaled: last (bias) entry -1
print("eigenvector of the smallest, rescaled so its last (bias) entry is -1: feature entries from",
      f"{null_vector[:-1].min():.4f} to {null_vector[:-1].max():.4f}")

# %% [markdown]
# Why must $\lambda$ be positive? The features of one grid sum to 1 on every row, so their sum
# equals the bias column: $X_1$ has dependent columns and $X_1^T X_1$ is singular (its smallest
# eigenvalue above is zero up to rounding, some $10^{17}$ times smaller than the largest). Any
# $\lambda > 0$ makes the system positive definite. Larger $\lambda$ shrinks the weights towards
# "predict the mean box", trading variance for bias.

# %% [markdown]
# **Question 4.3.** Look at the printed eigenvector of the smallest eigenvalue. Which combination of
# columns of $X_1$ does it describe, and why is $X_1 v = 0$ for it? What would `np.linalg.solve`
# do with $\lambda = 0$?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ### Choosing lambda by cross-validation
#
# `regression.choose_lambda_cv` splits the *training* images into $k$ folds, fits on $k - 1$,
# scores CorLoc on the held-out fold, and picks the best $\lambda$ (ties broken by the lower squared
# error). The test images are never looked at.

# %%
lambdas = 10.0 ** np.arange(-6, 3)
best, cv_corloc = regression.choose_lambda_cv(X[train], Y[train], lambdas, k=5, seed=0, score="corloc")
fig, ax = plt.subplots(figsize=(7, 3.4), constrained_layout=True)
ax.semilogx(lambdas, cv_corloc, marker="o")
ax.axvline(best, color="tab:red", ls="--", label=f"chosen lambda = {best:g}")
ax.set_xlabel("lambda")
ax.set_ylabel("5-fold CorLoc (training images)")
ax.set_title(f"Cross-validation of the ridge parameter ({grid}x{grid} grid)")
ax.legend()
plt.show()

# %% [markdown]
# ### Regression against thresholding, on the held-out images
#
# `regression.BoxRegressor` packages the three steps (features, ridge with cross-validated
# $\lambda$, prediction clipped to the image). We compare it with the threshold protocol (fraction
# tuned on the training maps) and with the centre-box baseline (the training set's mean box size,
# centred). All three are fitted on the same training maps and scored on the same test maps.

# %%
train_truth = [truth_all[i] for i in np.flatnonzero(train)]
test_truth = [truth_all[i] for i in np.flatnonzero(test)]
regressor = regression.BoxRegressor(grid_sizes=(grid,)).fit(maps_all[train], train_truth, sizes[train],
                                                           lambdas=lambdas, k=5)
spec = MapSpec.make("gradient")          # a name for the synthetic maps, which the protocols key on
train_maps, test_maps = {spec: maps_all[train]}, {spec: maps_all[test]}
threshold = protocols.ThresholdBoxes(spec, mode="union").fit(train_maps, train_truth)
center = protocols.CenterBox().fit(train_maps, train_truth)
predicted = {
    f"regression ({grid}x{grid} grid, lambda {regressor.lam:g})": regressor.predict(maps_all[test], sizes[test]),
    f"threshold, union at {threshold.fraction:.2f} max": threshold.predict(test_maps),
    "baseline: centred mean box": center.predict(test_maps),
}
scores = {}
for label, predicted_boxes in predicted.items():
    hit_vector = metrics.hits(predicted_boxes, test_truth)
    scores[label.split()[0]] = hit_vector.mean()
    low, high = metrics.bootstrap_ci(hit_vector)
    print(f"{label:40s} CorLoc {hit_vector.mean():.2f}  (95% interval {low:.2f}-{high:.2f}, "
          f"{len(hit_vector)} test maps)")

assert scores["threshold,"] > scores["regression"] > scores["baseline:"]    # what the prose below says
fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), constrained_layout=True)
colours = ["red", "cyan", "white"]
for ax, i in zip(axes, range(4)):
    image = ax.imshow(test_maps[spec][i], cmap="inferno")
    fig.colorbar(image, ax=ax, fraction=0.046, label="synthetic heat")
    draw(ax, test_truth[i][0], "lime")
    for colour, (label, predicted_boxes) in zip(colours, predicted.items()):
        draw(ax, predicted_boxes[i], colour, ls="--" if colour == "white" else "-")
    ax.set_title(f"test map {i}")
    ax.axis("off")
fig.suptitle("truth (green), regression (red), threshold (cyan), centre baseline (white, dashed)")
plt.show()

# %% [markdown]
# On these synthetic maps the threshold protocol scores highest and both beat the centre baseline
# (the printed CorLoc values; the intervals say how far to trust the gaps on this many test maps).
# That suits the maps: their heat is a compact blob on the box, exactly what a threshold assumes,
# and the distractor is weak. The regression has to learn 65 weights per coordinate from the
# training maps and predicts the box from where the heat lies on a coarse grid; it would gain on
# maps whose heat lies in a consistent *pattern* around the object rather than on it. Which
# protocol wins depends on the maps: notebook 5 asks the question on real maps of real photos.
#
# ## Summary
#
# * IoU `|A n B| / |A u B|` scores one box; CorLoc is the fraction of images with IoU >= 0.5 with
#   some ground-truth box; on small sets its bootstrap interval is wide.
# * Threshold protocol: hot pixels `m >= fraction * max m`, then the union or the largest
#   8-connected component; the fraction must be tuned on training images.
# * Khan et al.: positive part, normalization, smoothing, cut at the mean, border mask, geometric
#   mean of two maps, then the threshold protocol.
# * Ebrahimpour & Noelle: grid features `x = g / sum(g)`, ridge regression
#   `W = (X1^T X1 + lam I')^-1 X1^T Y` in closed form, `lam > 0` because the features are collinear
#   with the bias, chosen by k-fold cross-validation on the training set.
#
# ## Exercises
#
# 1. Replace the geometric mean in Khan's recipe by the product and the weighted sum
#    (`postprocess.mix`). Which is most robust when one of the two maps is noisy?
# 2. Fit the regression with several grids at once, `BoxRegressor(grid_sizes=(2, 4, 8))`. Does
#    CorLoc improve? What happens to the chosen lambda?
# 3. Solve the normal equations with $\lambda = 0$ using `np.linalg.lstsq` and with
#    `np.linalg.solve`. Which one fails, and why?
# 4. Make the distractor of `synthetic_maps` as strong as the object. How do the three protocols
#    react?
# 5. **Coursework.** `coursework/assignments/3_box_regression.py`: IoU, CorLoc, grid features,
#    ridge regression and cross-validation; check with `sensloc grade 3 FILE`.
