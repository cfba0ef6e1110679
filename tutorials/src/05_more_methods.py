# %% [markdown]
# # 5. More methods: gradient x input, SmoothGrad, Grad-CAM, neuron selection, occlusion
#
# Notebooks 1 to 3 built the sensitivity recursion of Eq. 1, `s_i = g'(eta_i) * sum_k w_ki s_k`,
# and three rules for its ReLUs (gradient, guided backpropagation and deconvnet, DeepLIFT's
# rescale), plus integrated gradients. Notebook 6 ranks five more methods against them. Each is
# introduced here with one formula (as the library's docstring states it), one library call, one
# figure on a real photo, and a check by hand that fails if the library and the formula part ways.
#
# **You will learn**
#
# 1. gradient x input, `x * df_t / dx`, and why its sum is the score on a linear model (and what
#    is missing on a network with biases);
# 2. SmoothGrad, `SG(x) = 1/n sum_j M(x + e_j)`: averaging maps over noisy copies;
# 3. Grad-CAM, `alpha_k = mean_{h,w} df_t/dA_k` and `CAM = relu(sum_k alpha_k A_k)`, computed
#    by hand from SqueezeNet's last layers;
# 4. Dwaraknath et al.'s neuron selection: the neurons with the largest `a_j * df_t/da_j`, each
#    sent back to the pixels with guided backpropagation;
# 5. occlusion, the one method without a backward pass: hide a patch, measure the score's drop.
#
# Integrated gradients, also ranked in notebook 6, are derived in notebook 3, section 5; section 5
# here only recalls the call.
#
# **Where the code is.** The library's implementations, which this notebook calls, are in
# `saliency/methods.py` (`gradient_x_input`, `grad_cam`, `neuron_selection`),
# `saliency/averaged.py` (`smoothgrad`, `integrated_gradients`) and `saliency/occlusion.py`;
# the feature layer they read by default is declared per architecture
# (`saliency/layers.py`). NumPy reference code written from the equations alone, for Grad-CAM,
# is in `tests/answer_keys/4_cam_and_khan.py` (assignment 4, `coursework/assignments/4_cam_and_khan.py`);
# this notebook's checks redo each formula by hand in NumPy.
#
# **Questions.** Cells marked **Question** are followed by a **Your answer:** cell for you to fill
# in; model answers are in `tutorials/answers/05_more_methods.md`.
#
# **Set-up** as in notebook 1 (the SqueezeNet weights are fetched on first use).
# `SENSLOC_TUTORIAL_FAST=1` uses fewer SmoothGrad samples, fewer selected neurons and larger
# occluding patches.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from skimage import data

from sensloc import nets
from sensloc import saliency
from sensloc import weights
from sensloc.data import images
from sensloc.saliency import postprocess

FAST = os.environ.get("SENSLOC_TUTORIAL_FAST", "0") not in ("", "0")
SG_SAMPLES = 4 if FAST else 16          # SmoothGrad samples
K_NEURONS = 5 if FAST else 20           # neurons selected (the `dwaraknath` preset uses 20)
WINDOW, STRIDE = (64, 64) if FAST else (48, 24)  # occluding patch and its step, in pixels
np.set_printoptions(precision=4, suppress=True)
started = time.time()
print("fast mode" if FAST else "full mode")


def relative_error(value, reference):
    """max |value - reference| / max |reference|: 0 for equal arrays, ~1e-7 for float32 rounding."""
    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    return np.abs(value - reference).max() / np.abs(reference).max()


def show(ax, heat, title, signed, fig, label):
    """One heat map, readable: the colour scale clipped at the 99.5th percentile of |heat| (a few
    extreme pixels would otherwise wash out the rest), symmetric and red/blue when ``signed``,
    with a colour bar."""
    limit = np.percentile(np.abs(heat), 99.5) or 1.0
    image = ax.imshow(heat, cmap="RdBu_r" if signed else "inferno",
                      vmin=-limit if signed else 0, vmax=limit)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.colorbar(image, ax=ax, fraction=0.046, label=label)

# %% [markdown]
# One real photo for every method: scikit-image's `chelsea`, resized and preprocessed as
# SqueezeNet expects (notebook 1), and the class SqueezeNet predicts for it.

# %%
net = weights.load("squeezenet1_0", download=True)  # fetches the 5 MB file once if missing
prep = net.preprocessing
photo = images.resize_image(data.chelsea(), prep.input_size, prep.resize)
x = prep.apply(photo)[None]                          # (1, 3, 227, 227) float32
t = int(net(x).argmax())
name = net.class_names[t].split(",")[0]
print(f"{net.name}: class {t} ({name}), input {x.shape}")

# %% [markdown]
# ## 1. Gradient x input
#
# `saliency.gradient_x_input` multiplies the input by the gradient, elementwise (docstring:
# `x * df_t / dx`):
#
# $$a_i = x_i \, \frac{\partial f_t}{\partial x_i}.$$
#
# The gradient says how much the score would move per unit change of a pixel; multiplying by the
# pixel turns that into "how much of the score does this pixel carry". On a **linear** model
# $f_t(x) = \sum_i w_{ti} x_i + b_t$ the gradient is $w_t$, so the contributions are $w_{ti} x_i$
# and they sum to the score minus the bias, $\sum_i a_i = f_t(x) - b_t$, exactly. That is the
# check: a linear network (`nets.Linear`) in float64, the library's map against the score by hand.

# %%
linear = nets.Network("linear", [nets.Flatten("flatten"), nets.Linear("fc", 12, 3)],
                      in_channels=3, input_size=(2, 2), default_input_size=(2, 2), num_classes=3)
nets.random_parameters(linear, seed=2).astype(np.float64)
x_small = np.random.default_rng(0).normal(size=(1, 3, 2, 2))
t_small = int(linear(x_small).argmax())
a_small = saliency.gradient_x_input(linear, x_small, target=t_small)
w, b = linear.layer("fc").weight, linear.layer("fc").bias
score_minus_bias = w[t_small] @ x_small.ravel()      # f_t(x) - b_t by hand
print("contributions a_i =", a_small.ravel())
print(f"sum(a) = {a_small.sum():.12f},  f_t(x) - b_t = {score_minus_bias:.12f}")
assert np.abs(a_small).max() > 0.01, "gradient x input is (almost) zero: nothing is checked"
assert abs(a_small.sum() - score_minus_bias) <= 1e-12 * abs(score_minus_bias)
assert relative_error(a_small.ravel(), w[t_small] * x_small.ravel()) <= 1e-12

# %% [markdown]
# On SqueezeNet the map is signed: a pixel darker than the mean colour (negative in preprocessed
# space) with a negative gradient counts *for* the class. We show the sum over colour channels,
# `m[i, j] = sum_c a[c, i, j]`, which keeps the sign (red for, blue against), next to the
# gradient's `max_c |.|` map of notebook 1. The total is printed against the score: SqueezeNet is
# not linear and has biases, so the two differ.

# %%
gradient = saliency.gradient(net, x, target=t)
gxi = saliency.gradient_x_input(net, x, target=t)
score = net(x)[0, t]
print(f"sum of gradient x input {gxi.sum():.2f}, score f_t(x) {score:.2f}, "
      f"f_t(x) - f_t(0) {score - net(np.zeros_like(x))[0, t]:.2f}")

fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
axes[0].imshow(photo)
axes[0].set_title(f"input: {name} (class {t})")
axes[0].axis("off")
show(axes[1], postprocess.reduce_channels(gradient, "max_abs")[0], f"gradient, max_c |.|\nclass {name}",
     False, fig, "max_c |df_t/dx_c|")
show(axes[2], postprocess.reduce_channels(gxi, "sum")[0], f"gradient x input, sum over c\nclass {name}",
     True, fig, "sum_c x_c df_t/dx_c")
plt.show()

# %% [markdown]
# **Question 5.1.** On the linear model, `sum(a) = f_t(x) - b_t` exactly; on SqueezeNet the
# printed sum of gradient x input is close to, but not equal to, $f_t(x)$ or $f_t(x) - f_t(0)$.
# Where does the rest of the score go? (Hint: SqueezeNet is made of convolutions with biases, ReLUs and pooling;
# for a fixed input, which ReLUs are on is fixed too.)

# %% [markdown]
# **Your answer:**

# %% [markdown]
# **Question 5.2.** A pixel exactly at the dataset's mean colour is 0 in preprocessed space. What
# does gradient x input give it, whatever its gradient? Which method of notebook 3 asks the same
# question with an explicit reference, and how do the two relate on the linear model?

# %% [markdown]
# **Your answer:**

# %% [markdown]
# ## 2. SmoothGrad
#
# Gradients of a ReLU network jump from pixel to pixel: the network is piecewise linear, and a
# tiny step can switch units on or off. SmoothGrad (Smilkov et al., 2017, `saliency.smoothgrad`)
# averages a method's maps over $n$ noisy copies of the image. Its docstring:
#
#     SG(x) = 1/n sum_j M(x + e_j)
#     e_j ~ N(0, (sigma * (max(x) - min(x)))^2)
#
# with the target fixed to the clean image's class and $M$ the gradient by default. The check
# draws the noise as the library does (NumPy's generator seeded with `seed`, one standard normal
# array of shape (N, n, C, H, W) scaled by $\sigma (\max x - \min x)$), computes the gradients of
# the noisy copies in batches of 8 as the library does, averages them, and compares with the
# library's call. (Batches matter: a copy computed alone sums its float32 products in another
# order, and a max-pool window whose two largest inputs nearly tie can then route its signal
# elsewhere: that copy's map moves by ~1e-3, more than rounding.)

# %%
sigma, seed = 0.15, 0
smooth = saliency.smoothgrad(net, x, target=t, samples=SG_SAMPLES, sigma=sigma, seed=seed)

scale = sigma * (x.max() - x.min())
noise = np.random.default_rng(seed).standard_normal((1, SG_SAMPLES) + x.shape[1:], dtype=x.dtype) * scale
noisy = x + noise[0]                                 # (n, C, H, W): the noisy copies
by_hand = np.concatenate([saliency.gradient(net, noisy[s:s + 8], target=t)
                          for s in range(0, SG_SAMPLES, 8)]).mean(axis=0, keepdims=True)
error = relative_error(smooth, by_hand)
print(f"noise std {noise.std():.3f} (sigma * (max(x) - min(x)) = {scale:.3f}); "
      f"SmoothGrad vs. the mean by hand: relative error {error:.1e}")
assert np.abs(by_hand).max() > 0, "the maps are zero: nothing is checked"
assert error <= 1e-5  # the same maps summed in another order; a wrong draw or target gives O(1)


def roughness(heat):
    """Mean |difference| between horizontal and vertical neighbours over the mean |value|:
    how much a map jumps from pixel to pixel, independently of its scale."""
    heat = np.abs(heat)
    jumps = np.abs(np.diff(heat, axis=0)).mean() + np.abs(np.diff(heat, axis=1)).mean()
    return jumps / heat.mean()


maps = {"gradient": postprocess.reduce_channels(gradient, "max_abs")[0],
        f"SmoothGrad, n = {SG_SAMPLES}, sigma = {sigma}": postprocess.reduce_channels(smooth, "max_abs")[0]}
fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6), constrained_layout=True)
for ax, (label, heat) in zip(axes, maps.items()):
    show(ax, heat, f"{label}, max_c |.|\nclass {name}, roughness {roughness(heat):.2f}", False, fig,
         "max_c |.| (clipped at 99.5th pct)")
plt.show()
rough_gradient, rough_smooth = (roughness(heat) for heat in maps.values())
print(f"roughness: gradient {rough_gradient:.2f}, SmoothGrad {rough_smooth:.2f}")
assert rough_smooth < rough_gradient, "the prose below says SmoothGrad is smoother"

# %% [markdown]
# The roughness (mean jump between neighbouring pixels relative to the mean value) is printed in
# the titles: averaging over noisy copies lowers it, and more samples lower it further (try
# `SENSLOC_TUTORIAL_FAST=0`, 16 samples). The price: $n$ backward passes instead of one.

# %% [markdown]
# **Question 5.3.** What does SmoothGrad return as $\sigma \to 0$? And as $n$ grows with $\sigma$
# fixed, what does it approach: the gradient of which function?

# %% [markdown]
# **Your answer:**

# %% [markdown]
# ## 3. Grad-CAM
#
# Grad-CAM (Selvaraju et al., 2017, `saliency.grad_cam`) does not go back to the pixels. It stops at
# a convolutional layer's output $A$ (K feature maps of $h \times w$ cells), weighs each feature
# map by the mean gradient of the score over its cells, and keeps the positive part. Its
# docstring:
#
#     alpha_k = mean_{h,w} df_t/dA_k
#     CAM = relu(sum_k alpha_k A_k)
#
# The layer is the architecture's feature layer (`saliency/layers.py`): `fire9` for SqueezeNet,
# 512 maps of 13 x 13 cells. After `fire9`, SqueezeNet has only a 1x1 convolution
# (`conv_final`, weights $W$ of shape (1000, 512), bias $b$, and Caffe's padding of 1: its output
# is 15 x 15, the border cells see only zeros and hold $b_t$), a ReLU and a global average over
# the $15 \times 15$ cells (`nets/squeezenet.py`):
#
# $$f_t = \frac{1}{15^2}\Big(\sum_{h,w} \mathrm{relu}(z_t[h, w]) + 56\, \mathrm{relu}(b_t)\Big),\qquad
#   z_t[h, w] = \sum_k W_{tk} A_k[h, w] + b_t,$$
#
# with $(h, w)$ over the 13 x 13 inner cells and 56 border cells. So the gradient is, by hand,
# $\partial f_t / \partial A_k[h, w] = W_{tk}\, 1[z_t[h, w] > 0] / 15^2$.
# The check computes $f_t$, the gradient, $\alpha$ and the CAM from this formula in NumPy and
# compares with the library, which sends the score back through the network's own backward pass
# (`net.backward(..., stop="fire9")`).

# %%
layer = net.feature_layer
trace = net.forward(x)
A = trace.outputs[layer][0].astype(np.float64)       # (512, 13, 13)
W = net.layer("conv_final").weight[:, :, 0, 0].astype(np.float64)  # (1000, 512)
b_final = net.layer("conv_final").bias.astype(np.float64)
K_maps, h, w_cells = A.shape
cells_out = (h + 2) * (w_cells + 2)                  # 15 x 15: the padded 1x1 convolution's output
z_t = np.einsum("k,khw->hw", W[t], A) + b_final[t]  # (13, 13), the inner cells
f_t = (np.maximum(z_t, 0).sum() + (cells_out - h * w_cells) * max(b_final[t], 0)) / cells_out
dA = W[t][:, None, None] * (z_t > 0)[None] / cells_out  # df_t/dA, (512, 13, 13)
alpha = dA.mean(axis=(1, 2))                         # alpha_k = mean_{h,w} df_t/dA_k
cam_by_hand = np.maximum(np.einsum("k,khw->hw", alpha, A), 0)

cam = saliency.grad_cam(net, x, target=t)[0]         # (13, 13)
print(f"layer {layer}: A {A.shape}; f_t by hand {f_t:.4f}, network {trace.output[0, t]:.4f}")
print(f"Grad-CAM: {int((cam > 0).sum())} of {cam.size} cells positive; "
      f"relative error against the NumPy formula {relative_error(cam, cam_by_hand):.1e}")
assert abs(f_t - trace.output[0, t]) <= 1e-5 * abs(f_t)  # the head is as written above
assert cam_by_hand.max() > 0, "the CAM is zero: nothing is checked"
assert relative_error(cam, cam_by_hand) <= 1e-5     # float32 against float64

# %% [markdown]
# The terms of $z_t$ before the sum over $k$, $W_{tk} A_k[h, w]$, say how much each of the 512
# channels adds to the class score at each cell: `saliency.class_contributions` returns them,
# (N, 512, 13, 13), for any network whose classifier is such a linear map of one layer's cells.
# The `best_two_nets` localization preset reads them as cell features beside the activations
# (`localize/protocols/objectness.py`). Summed over the channels, plus $b_t$, they give $z_t$ back:

# %%
contributions = saliency.class_contributions(net, x, target=t, trace=trace)[0]  # (512, 13, 13)
print(f"class contributions {contributions.shape}; relative error of their sum plus b_t against "
      f"z_t {relative_error(contributions.sum(axis=0) + b_final[t], z_t):.1e}")
assert relative_error(contributions.sum(axis=0) + b_final[t], z_t) <= 1e-5

# %% [markdown]
# The CAM lives on the 13 x 13 grid; `postprocess.upsample` resizes it bilinearly to the input for
# boxes (this is what the `grad_cam` map kind of notebook 6 does). Left: the cells as they are;
# right: upsampled over the photo.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
axes[0].imshow(photo)
axes[0].set_title(f"input: {name} (class {t})")
axes[0].axis("off")
show(axes[1], cam, f"Grad-CAM at {layer}, {h} x {w_cells} cells\nclass {name}", False, fig,
     "relu(sum_k alpha_k A_k)")
upsampled = postprocess.upsample(cam[None], photo.shape[:2])[0]
axes[2].imshow(photo)
image = axes[2].imshow(upsampled, cmap="inferno", alpha=0.6, vmin=0, vmax=upsampled.max())
axes[2].set_title(f"Grad-CAM upsampled to {photo.shape[0]} x {photo.shape[1]}, over the photo")
axes[2].axis("off")
fig.colorbar(image, ax=axes[2], fraction=0.046, label="CAM (bilinear)")
plt.show()

# %% [markdown]
# **Question 5.4.** For SqueezeNet, show from the formula above that $\sum_k \alpha_k A_k[h, w]$ is
# proportional to $z_t[h, w] - b_t$ when every cell has $z_t > 0$. What is Grad-CAM then, in
# words? (This is the "class activation map" of Zhou et al., 2016, that Grad-CAM generalizes.)

# %% [markdown]
# **Your answer:**

# %% [markdown]
# **Question 5.5.** Why is the final ReLU there? What would `saliency.grad_cam(..., relu=False)`
# show in the negative cells?

# %% [markdown]
# **Your answer:**

# %% [markdown]
# ## 4. Dwaraknath et al.: neuron selection
#
# Dwaraknath et al. pick the neurons of the feature layer that matter most for the class and
# map each back to the pixels with guided backpropagation (notebook 2). From the docstring of
# `saliency.neuron_selection`: a neuron $j$ of layer $l$ (one element of its (K, h, w) output) is
# scored by its activation times its effect on the class score, `a_j * df_t/da_j`; for the $k$ best
# neurons, a guided backpropagation starts at that neuron alone (signal $e_j$ at layer $l$), and the
# $k$ maps are averaged after each is divided by its largest absolute value.
#
# The score `a_j * df_t/da_j` is gradient x input again, one layer up: with `A` and `dA` of the
# Grad-CAM section, the relevance is `A * dA`. The check: the library's map with $k = 1$ against the
# guided backpropagation started, by hand, at the neuron that has the largest `A * dA`.

# %%
relevance = A * dA                                   # a_j * df_t/da_j, (512, 13, 13)
order = np.argsort(-relevance.ravel(), kind="stable")
top = order[0]
gap = relevance.ravel()[order[0]] - relevance.ravel()[order[1]]
print(f"best neuron: channel {top // (h * w_cells)}, cell {tuple(int(v) for v in np.unravel_index(top % (h * w_cells), (h, w_cells)))}, "
      f"relevance {relevance.ravel()[top]:.4f} (next best {gap:.4f} lower)")

signal = np.zeros_like(trace.outputs[layer])
signal.reshape(-1)[top] = 1                          # e_j at the output of fire9
one = net.backward(trace, signal, rule=saliency.Guided(), start=layer)
one_by_hand = one / np.abs(one).max()
one_library = saliency.neuron_selection(net, x, target=t, k=1)
error = relative_error(one_library, one_by_hand)
print(f"neuron selection, k = 1: relative error against the map by hand {error:.1e}")
assert np.abs(one_by_hand).max() == 1.0 and np.count_nonzero(one_by_hand) > 100
assert error <= 1e-6                                 # the same passes; another neuron gives O(1)

selected = saliency.neuron_selection(net, x, target=t, k=K_NEURONS)

# %% [markdown]
# The figure: the cells of the $k$ selected neurons on the photo (each cell of the 13 x 13 grid
# covers about 17 x 17 pixels; a neuron's receptive field is much larger), the map of the best
# neuron alone, and the average of the $k$ normalized maps (`max_c |.|`).

# %%
cell = photo.shape[0] / h
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
axes[0].imshow(photo)
for rank, index in enumerate(order[:K_NEURONS]):
    row, col = np.unravel_index(index % (h * w_cells), (h, w_cells))
    axes[0].add_patch(Rectangle((col * cell, row * cell), cell, cell, fill=False,
                                color="red" if rank == 0 else "cyan", lw=2))
axes[0].set_title(f"the {K_NEURONS} selected {layer} neurons' cells\n(red: the best)")
axes[0].axis("off")
show(axes[1], postprocess.reduce_channels(one_library, "max_abs")[0], f"best neuron, guided\nclass {name}",
     False, fig, "max_c |.|, normalized")
show(axes[2], postprocess.reduce_channels(selected, "max_abs")[0],
     f"neuron selection, k = {K_NEURONS}\nclass {name}", False, fig, "max_c |.|, mean of k maps")
plt.show()
rows_, cols_ = np.unravel_index(order[:K_NEURONS] % (h * w_cells), (h, w_cells))
span = (rows_.max() - rows_.min() + 1) * (cols_.max() - cols_.min() + 1)
print(f"the {K_NEURONS} neurons sit in {len({*zip(rows_, cols_)})} distinct cells, inside a block of "
      f"{rows_.max() - rows_.min() + 1} x {cols_.max() - cols_.min() + 1} cells "
      f"({100 * span / (h * w_cells):.0f}% of the {h} x {w_cells} grid)")

# %% [markdown]
# **Question 5.6.** The `dwaraknath` preset (`localize/presets.py`) uses $k = 20$ neurons: with the
# top 5 it found the object less often on the development photos (35.5% CorLoc against 55.3%).
# Given where the selected neurons sit in the figure (and the printed share of the grid they
# cover), why would a few neurons give boxes that are too small?

# %% [markdown]
# **Your answer:**

# %% [markdown]
# ## 5. Integrated gradients
#
# Integrated gradients are derived in notebook 3, section 5, with their completeness check and a
# figure: `IG(x) = (x - x_ref) * int_0^1 df_t/dx (x_ref + alpha (x - x_ref)) d alpha`, computed by
# `saliency.integrated_gradients(net, x, target=t, reference="zero", steps=32)`. Notebook 6
# scores them with the `"zero"` reference and 32 steps (4 in fast mode). Note that with the zero
# reference, $x - x_{ref} = x$: integrated gradients are gradient x input with the gradient
# averaged along the path from the mean image to the photo.
#
# ## 6. Occlusion
#
# Occlusion (Zeiler & Fergus, 2014, `saliency.occlusion`) needs no backward pass. It hides a
# square patch of the image (sets it to a baseline: 0, the mean colour, by default), measures how
# much the score drops, and slides the patch by a stride. Each pixel gets the mean drop over the
# patches that cover it. The docstring:
#
#     a[c, i, j] = 1/n_ij * sum_{p covers (i, j)} (f_t(x) - f_t(x with patch p = baseline))
#
# where $n_{ij}$ is the number of patches covering pixel $(i, j)$; the first patch sits at the
# top-left corner, and patches step by the stride until one reaches the border (the last may stick
# out and is cut). The check: a small convolutional network on an 8 x 8 image, 3 x 3 patches with
# stride 2, the formula written as a plain loop.

# %%
tiny = nets.Network("tiny", [nets.Conv2d("conv", 3, 4, 3, padding=1), nets.ReLU("relu"),
                             nets.Flatten("flatten"), nets.Linear("fc", 4 * 8 * 8, 3)],
                    in_channels=3, input_size=(8, 8), default_input_size=(8, 8), num_classes=3)
nets.random_parameters(tiny, seed=3).astype(np.float64)
x_tiny = np.random.default_rng(1).normal(size=(1, 3, 8, 8))
t_tiny = int(tiny(x_tiny).argmax())
window, stride = 3, 2

clean = tiny(x_tiny)[0, t_tiny]
drop_sum, count = np.zeros((8, 8)), np.zeros((8, 8))
top_row = 0
while True:                                          # patches down: 0, 2, 4, 6 (the last cut)
    left = 0
    while True:                                      # and across
        hidden = x_tiny.copy()
        hidden[:, :, top_row:top_row + window, left:left + window] = 0.0
        drop_sum[top_row:top_row + window, left:left + window] += clean - tiny(hidden)[0, t_tiny]
        count[top_row:top_row + window, left:left + window] += 1
        if left + window >= 8:
            break
        left += stride
    if top_row + window >= 8:
        break
    top_row += stride
occlusion_by_hand = drop_sum / count

occlusion_tiny = saliency.occlusion(tiny, x_tiny, target=t_tiny, window=window, stride=stride)
print("patches covering each pixel (first rows):\n", count[:3])
print(f"occlusion, 8 x 8: relative error against the loop {relative_error(occlusion_tiny[0, 0], occlusion_by_hand):.1e}; "
      f"all channels equal: {bool(np.all(occlusion_tiny == occlusion_tiny[:, :1]))}")
assert np.abs(occlusion_by_hand).max() > 0.01, "every drop is zero: nothing is checked"
assert relative_error(occlusion_tiny[0, 0], occlusion_by_hand) <= 1e-12  # float64 both
assert np.all(occlusion_tiny == occlusion_tiny[:, :1])

# %% [markdown]
# On the photo: patches of `WINDOW` x `WINDOW` pixels stepping by `STRIDE` (48 and 24 in the full
# version; 64 and 64, a coarse 4 x 4 grid of patches, in fast mode). Each patch costs one forward
# pass. The map is signed: red where hiding the pixel lowers the score, blue where it raises it.

# %%
tic = time.time()
occluded = saliency.occlusion(net, x, target=t, window=WINDOW, stride=STRIDE)
passes = len(saliency.patch_starts(x.shape[2], WINDOW, STRIDE)) * len(saliency.patch_starts(x.shape[3], WINDOW, STRIDE))
print(f"occlusion: {passes} forward passes in {time.time() - tic:.1f} s; "
      f"largest drop {occluded.max():.2f} of the score {score:.2f}")

fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6), constrained_layout=True)
axes[0].imshow(photo)
axes[0].set_title(f"input: {name} (class {t})")
axes[0].axis("off")
show(axes[1], occluded[0, 0], f"occlusion, {WINDOW} px patches, stride {STRIDE}\nclass {name}", True, fig,
     "mean drop of f_t")
plt.show()

# %% [markdown]
# **Question 5.7.** How many forward passes does occlusion need for a 227 x 227 image with
# `window=32, stride=16`? How many backward passes does a single gradient map need? What does
# occlusion see that no gradient method sees?

# %% [markdown]
# **Your answer:**

# %% [markdown]
# ## 7. All of them on one photo
#
# The maps of this notebook side by side, each on its own colour scale (99.5th percentile):
# unsigned maps in black-to-yellow, signed maps in red and blue.

# %%
panels = [("gradient, max_c |.|", postprocess.reduce_channels(gradient, "max_abs")[0], False),
          ("gradient x input, sum_c", postprocess.reduce_channels(gxi, "sum")[0], True),
          (f"SmoothGrad (n = {SG_SAMPLES}), max_c |.|", postprocess.reduce_channels(smooth, "max_abs")[0], False),
          (f"Grad-CAM ({layer}), upsampled", upsampled, False),
          (f"neuron selection (k = {K_NEURONS}), max_c |.|",
           postprocess.reduce_channels(selected, "max_abs")[0], False),
          (f"occlusion ({WINDOW} px, stride {STRIDE})", occluded[0, 0], True)]
fig, axes = plt.subplots(2, 3, figsize=(15, 9), constrained_layout=True)
for ax, (label, heat, signed) in zip(axes.ravel(), panels):
    show(ax, heat, f"{label}\nclass {name}", signed, fig, "")
plt.show()
print(f"notebook ran in {time.time() - started:.0f} s")

# %% [markdown]
# ## Summary
#
# * Gradient x input, `x * df_t / dx`, sums to the score minus the bias on a linear model; on a
#   ReLU network part of the score is carried by the biases and the sum misses it.
# * SmoothGrad, `SG(x) = 1/n sum_j M(x + e_j)`, trades $n$ backward passes for a smoother map.
# * Grad-CAM, `alpha_k = mean_{h,w} df_t/dA_k` and `CAM = relu(sum_k alpha_k A_k)`, is coarse (one
#   value per cell of the feature layer) but class-specific; for SqueezeNet it can be written in
#   a few lines of NumPy from the last convolution's weights.
# * Neuron selection scores the feature layer's neurons by `a_j * df_t/da_j` and averages the
#   guided backpropagations of the best $k$; $k$ decides how much of the object it covers.
# * Occlusion costs one forward pass per patch and measures what hiding a region does to the
#   score, not a derivative.
# * Notebook 6 turns every one of these maps into boxes and ranks them on photos with ground truth.
#
# ## Exercises
#
# 1. Run SmoothGrad with `method=saliency.guided_backprop` and with `sigma` 0.05, 0.15, 0.3:
#    plot the roughness against sigma.
# 2. Grad-CAM at an earlier layer (`layer="fire8"`, 27 x 27 cells, before `pool8`; print
#    `{k: v.shape for k, v in trace.outputs.items()}` for the others): finer, but is it still
#    class-specific? Compare the maps of two classes.
# 3. Neuron selection with `rule=saliency.Gradient()` instead of guided backpropagation: what
#    changes in the map?
# 4. Occlusion with the blurred image as baseline (`baseline="blur"`): which regions matter now?
# 5. **Coursework.** `coursework/assignments/4_cam_and_khan.py`, part 1: Grad-CAM from activations
#    and gradients; check with `sensloc grade 4 FILE`.
