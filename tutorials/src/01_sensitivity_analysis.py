# %% [markdown]
# # 1. Sensitivity analysis: the backward recursion of Eq. 1
#
# A classifier that recognizes an object must know where it is. The simplest way to ask it is to
# measure how much the score of the class changes when a pixel changes: the **sensitivity** of the
# score to every input, i.e. its gradient. This notebook derives the recursion that computes it.
#
# **You will learn**
#
# 1. where Eq. 1 of Ebrahimpour & Noelle, `s_i = g'(eta_i) * sum_k w_ki s_k`, comes from, by
#    deriving it by hand on a two-layer network and comparing with the library;
# 2. how to check any backward pass with centred finite differences;
# 3. why the backward pass of a convolution is a *transposed* convolution, and what max pooling does
#    to the signal;
# 4. how to compute and display the sensitivity map of a real photo with a real ImageNet network
#    (SqueezeNet 1.0).
#
# **Set-up.** `pip install -e .` in the repository (and `pip install jupyterlab` to open this
# notebook). The pretrained SqueezeNet 1.0 weights (5 MB) are downloaded once, with their SHA-256
# checked, the first time you run the last section (or beforehand with
# `sensloc weights fetch squeezenet1_0`). The photos ship with scikit-image.
#
# Setting the environment variable `SENSLOC_TUTORIAL_FAST=1` runs a shortened version (the test
# suite does this); the results are the same, only fewer checks are made.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from skimage import data

from sensloc import nets
from sensloc import saliency
from sensloc import weights
from sensloc.data import images
from sensloc.nets import reference
from sensloc.saliency import postprocess

FAST = os.environ.get("SENSLOC_TUTORIAL_FAST", "0") not in ("", "0")
np.set_printoptions(precision=4, suppress=True)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. Eq. 1, derived
#
# Number the units of a network. Unit $k$ has a pre-activation $\eta_k$ (the weighted sum it
# receives) and an output $g(\eta_k)$, where $g$ is its nonlinearity (ReLU here,
# $g(\eta) = \max(\eta, 0)$). A unit $k$ in one layer reads the units $i$ of the layer below:
#
# $$\eta_k = \sum_i w_{ki}\, g(\eta_i) + b_k .$$
#
# Let $f_t$ be the score of class $t$ (the logit, before the softmax). The **sensitivity** of unit
# $i$ is $s_i = \partial f_t / \partial \eta_i$. Unit $i$ influences $f_t$ only through the units
# $k$ that read it, so by the chain rule
#
# $$s_i = \sum_k \frac{\partial f_t}{\partial \eta_k}\,\frac{\partial \eta_k}{\partial \eta_i}
#       = \sum_k s_k\, w_{ki}\, g'(\eta_i) = g'(\eta_i) \sum_k w_{ki}\, s_k . \qquad \text{(Eq. 1)}$$
#
# In the notation of the code's docstrings (`nets/layers.py`, `saliency/rules.py`):
#
#     s_i = g'(eta_i) * sum_k w_ki s_k
#
# The recursion starts at the logits, where $s = \partial f_t / \partial z = e_t$ (a one-hot
# vector: `saliency.score_signal`), and ends at the pixels, which are *linear* units ($g$ is the
# identity, $g' = 1$): there $s_i = \partial f_t / \partial x_i$, the sensitivity map.
#
# The library splits every backward step in two, exactly as Eq. 1 does:
#
# * the **linear part** `sum_k w_ki s_k` belongs to the network (`nets`): for a fully connected
#   layer it is `dx_i = sum_k w_ki dy_k, i.e. dy @ W` (`nets.Linear.backward`), for a convolution
#   a transposed convolution (section 3);
# * the **multiplier** `g'(eta_i)` is a *rule* (`saliency.rules`). The gradient rule is
#   `s_in = g'(eta) * s = 1[eta > 0] * s`. Notebooks 2 and 3 swap this one line for other rules.

# %% [markdown]
# ## 2. A two-layer network by hand
#
# The library's networks take image batches `(N, C, H, W)`, so the toy network reads a 4-vector
# stored as a `(1, 4, 1, 1)` batch, flattens it, and applies `fc1` (4 -> 5), a ReLU and `fc2`
# (5 -> 3). We compute in float64 so that finite differences are accurate.

# %%
toy = nets.Network("toy", [nets.Flatten("flatten"), nets.Linear("fc1", 4, 5), nets.ReLU("relu1"),
                           nets.Linear("fc2", 5, 3)],
                   in_channels=4, input_size=(1, 1), default_input_size=(1, 1), num_classes=3)
nets.random_parameters(toy, seed=1).astype(np.float64)

rng = np.random.default_rng(0)
x = rng.normal(size=(1, 4, 1, 1))
logits = toy(x)[0]
t = int(np.argmax(logits))
print("logits", logits, "-> explain class t =", t)

# %% [markdown]
# Now Eq. 1 by hand, one layer at a time. `W1` has shape `(5, 4)`: `W1[k, i]` is $w_{ki}$, the
# weight from input $i$ to hidden unit $k$ (PyTorch's layout, `(D_out, D_in)`).

# %%
W1, b1 = toy.layer("fc1").weight, toy.layer("fc1").bias
W2 = toy.layer("fc2").weight

eta = W1 @ x.reshape(4) + b1               # pre-activations eta_k of the hidden units
s_logits = np.eye(3)[t]                     # s at the logits: d f_t / d z = e_t
s_hidden = (eta > 0) * (W2.T @ s_logits)    # Eq. 1, i hidden, k logits: g'(eta_i) * sum_k w_ki s_k
s_input = W1.T @ s_hidden                   # Eq. 1 at the input: linear units, g' = 1
print("eta      ", eta)
print("s hidden ", s_hidden)
print("s input  ", s_input)

# %% [markdown]
# The library computes the same recursion. `saliency.gradient` runs the forward pass, puts $e_t$ at
# the logits and sends it back; `Network.backward` can also stop half-way (`stop=` a layer name
# returns the signal at that layer's *output*), which shows the two halves of Eq. 1 separately.

# %%
library = saliency.gradient(toy, x, target=t).reshape(4)
print("library  ", library, " max |difference| =", np.abs(library - s_input).max())

trace = toy.forward(x)
signal = saliency.score_signal(trace.output, np.array([t]))
after_relu = toy.backward(trace, signal, stop="relu1")    # sum_k w_ki s_k (linear part only)
before_relu = toy.backward(trace, signal, stop="fc1")     # times g'(eta_i): the hidden s_i
print("linear part       ", after_relu[0])
print("times g'(eta)     ", before_relu[0], " = s_hidden:", np.allclose(before_relu[0], s_hidden))

# %% [markdown]
# ### Checking against finite differences
#
# Any backward pass can be checked against the definition of the derivative. Centred differences
# $(f_t(x + h e_i) - f_t(x - h e_i)) / 2h$ have an error of order $h^2$ (plus rounding of order
# $\epsilon / h$), so in float64 $h = 10^{-6}$ gives about ten correct digits, unless
# $x \pm h e_i$ straddles the kink of a ReLU.

# %%
def finite_differences(net, x, t, h=1e-6, indices=None):
    """Centred differences of the logit f_t w.r.t. the chosen entries of x (all by default)."""
    indices = range(x.size) if indices is None else indices
    result = {}
    for i in indices:
        step = np.zeros_like(x)
        step.flat[i] = h
        result[i] = (net(x + step)[0, t] - net(x - step)[0, t]) / (2 * h)
    return result


fd = np.array(list(finite_differences(toy, x, t).values()))
print("finite differences", fd)
print("max |Eq. 1 - finite differences| =", np.abs(fd - s_input).max())

# %% [markdown]
# ## 3. Convolution: the backward pass is a transposed convolution
#
# A convolution layer (a cross-correlation, as in every deep-learning library) computes, in the
# notation of `nets/reference.py` (the NumPy backend that runs by default, `nets.current_backend()`),
#
# $$y[n, o, oh, ow] = b[o] + \sum_{c,i,j} w[o, c, i, j]\; x_{pad}[n, c, s \cdot oh + i, s \cdot ow + j]$$
#
# (docstring: `y[n, o, oh, ow] = b[o] + sum_{c,i,j} w[o, c, i, j] * x_pad[n, c, s*oh + i, s*ow + j]`),
# with stride $s$ and zero padding. This is linear in $x$: $y = A x + b$ for a (large, sparse)
# matrix $A$. So its backward pass is $A^T$: the linear part of Eq. 1, `sum_k w_ki s_k`, where $k$
# runs over the output positions that read input $i$. Written tap by tap, every weight sends its
# output's signal back to the pixel it read:
#
#     dx_pad[n, c, s*oh + i, s*ow + j] += w[o, c, i, j] * dy[n, o, oh, ow]
#
# Let us build $A$ explicitly for a tiny convolution (one channel, 6x6 input, 3x3 kernel,
# stride 2, padding 1) by pushing the unit vectors through the forward pass.

# %%
H = W = 6
K, stride, padding = 3, 2, 1
w = rng.normal(size=(1, 1, K, K))
zero_bias = np.zeros(1)
out_shape = reference.conv2d_forward(np.zeros((1, 1, H, W)), w, zero_bias, stride, padding).shape
columns = []
for i in range(H * W):
    unit = np.zeros((1, 1, H, W))
    unit.flat[i] = 1.0
    columns.append(reference.conv2d_forward(unit, w, zero_bias, stride, padding).ravel())
A = np.stack(columns, axis=1)
print("output", out_shape[2:], "-> A has shape", A.shape, "(outputs x inputs)")

dy = rng.normal(size=out_shape)
dx_library = reference.conv2d_backward_input(dy, w, (1, 1, H, W), stride, padding)
dx_matrix = (A.T @ dy.ravel()).reshape(1, 1, H, W)
print("max |library - A^T dy| =", np.abs(dx_library - dx_matrix).max())

fig, ax = plt.subplots(figsize=(7, 3.2), constrained_layout=True)
image = ax.imshow(A, cmap="RdBu_r", vmin=-np.abs(A).max(), vmax=np.abs(A).max())
ax.set_title("A 3x3 convolution (stride 2, padding 1) as a matrix A")
ax.set_xlabel("input pixel (row-major, 6 x 6)")
ax.set_ylabel("output position (3 x 3)")
fig.colorbar(image, ax=ax, label="weight")
plt.show()

# %% [markdown]
# Why "transposed convolution"? Each row of $A$ is the kernel placed at one output position; each
# column of $A$ is then the kernel *flipped*, read the other way. So multiplying by $A^T$ is itself
# a convolution: spread the output signal back onto the input grid (inserting $s - 1$ zeros
# between its entries for stride $s$), convolve it fully with the kernel (`scipy.signal.convolve2d`
# flips the kernel, which is what we need), and cut away the padding.

# %%
from scipy.signal import convolve2d

def transposed_convolution(dy, kernel, input_hw, stride, padding):
    """A^T dy for one channel, written as a full convolution of the spread-out signal."""
    oh, ow = dy.shape
    spread = np.zeros((stride * (oh - 1) + 1, stride * (ow - 1) + 1))
    spread[::stride, ::stride] = dy
    full = convolve2d(spread, kernel, mode="full")      # covers the padded input from its corner
    padded = np.zeros((input_hw[0] + 2 * padding, input_hw[1] + 2 * padding))
    rows, cols = min(full.shape[0], padded.shape[0]), min(full.shape[1], padded.shape[1])
    padded[:rows, :cols] = full[:rows, :cols]
    return padded[padding:padding + input_hw[0], padding:padding + input_hw[1]]


dx_scipy = transposed_convolution(dy[0, 0], w[0, 0], (H, W), stride, padding)
print("max |library - transposed convolution| =", np.abs(dx_library[0, 0] - dx_scipy).max())

# %% [markdown]
# ### Max pooling: a switch instead of a weight
#
# A max pool has no weights; its output is one of its inputs. Its derivative sends each window's
# signal to the input that won the window (the *switch*, remembered by the forward pass) and
# nothing to the others. With overlapping windows (3x3, stride 2, as in SqueezeNet) a pixel can
# win two windows, and then it receives **both** signals: the sum in `sum_k w_ki s_k` runs over
# every output that read it.

# %%
pool = nets.MaxPool2d("pool", 3, 2)
z = rng.normal(size=(1, 1, 7, 7))
pooled, pool_cache = pool.forward(z)
routed = pool.backward(np.ones_like(pooled), pool_cache)
print("pooled output", pooled.shape[2:], "; signals received per input pixel:")
print(routed[0, 0])

# %% [markdown]
# ### A small convolutional network against finite differences
#
# Convolution, ReLU, overlapping max pooling, another convolution, a global average: the library's
# gradient (one backward pass) against finite differences (two forward passes per pixel).

# %%
small = nets.Network("small", [nets.Conv2d("conv1", 3, 4, 3, padding=1), nets.ReLU("relu1"),
                               nets.MaxPool2d("pool1", 3, 2), nets.Conv2d("conv2", 4, 5, 3, padding=1),
                               nets.ReLU("relu2"), nets.GlobalAvgPool2d("gap")],
                     in_channels=3, input_size=None, default_input_size=(9, 9), num_classes=5)
nets.random_parameters(small, seed=2).astype(np.float64)
x_small = rng.normal(size=(1, 3, 9, 9))
t_small = int(small(x_small).argmax())
g_small = saliency.gradient(small, x_small, target=t_small)
checked = rng.choice(x_small.size, size=40 if FAST else x_small.size, replace=False)
fd_small = finite_differences(small, x_small, t_small, indices=checked)
error = max(abs(fd_small[i] - g_small.flat[i]) for i in checked)
print(f"{len(checked)} inputs checked; max |gradient - finite differences| = {error:.2e} "
      f"(gradient entries up to {np.abs(g_small).max():.2f})")

# %% [markdown]
# ## 4. The sensitivity map of a real photo
#
# SqueezeNet 1.0 (Iandola et al., 2016), trained on ImageNet, 1.2 million parameters. The
# library loads the installed weights; if they are missing, this cell downloads the official
# Deep Compression file (5 MB, its SHA-256 checked) and converts it. Without a network
# connection, copy `compressed_SqueezeNet.net` from elsewhere and run
# `sensloc weights convert compressed_SqueezeNet.net`.

# %%
net = weights.load("squeezenet1_0", download=True)  # fetches the 5 MB file once if missing
prep = net.preprocessing
print(net, "| input", prep.input_size, prep.channel_order, "minus mean", prep.mean)

photo = data.chelsea()                                        # (300, 451, 3) uint8, RGB
resized = images.resize_image(photo, prep.input_size, prep.resize)
x_cat = prep.apply(resized)[None]                             # (1, 3, 227, 227) float32
probabilities = nets.softmax(net(x_cat).astype(np.float64))[0]
t_cat = int(probabilities.argmax())
name = net.class_names[t_cat]
print(f"top-1: {name} (class {t_cat}), p = {probabilities[t_cat]:.3f}")

# %% [markdown]
# The sensitivity map is Eq. 1 all the way down to the pixels, $s = \partial f_t / \partial x$, of
# shape `(3, H, W)`: one value per colour channel. Simonyan et al. (2014) reduce it to one value per
# pixel with `m[i, j] = max_c |a[c, i, j]|` (`saliency.postprocess.reduce_channels(a, "max_abs")`;
# `saliency.sensitivity_map` does both steps).

# %%
gradient = saliency.gradient(net, x_cat, target=t_cat)        # (1, 3, 227, 227): d f_t / d x
heat = postprocess.reduce_channels(gradient, "max_abs")[0]    # (227, 227)
assert np.allclose(heat, saliency.sensitivity_map(net, x_cat, target=t_cat)[0])

fig, axes = plt.subplots(1, 3, figsize=(13, 4.3), constrained_layout=True)
axes[0].imshow(resized)
axes[0].set_title(f"input (227 x 227): {name}")
image = axes[1].imshow(heat, cmap="inferno")
axes[1].set_title(f"sensitivity max_c |df/dx_c|\nclass {t_cat}: {name}")
fig.colorbar(image, ax=axes[1], fraction=0.046, label="|d logit / d pixel|")
axes[2].imshow(resized)
overlay = axes[2].imshow(postprocess.gaussian_smooth(heat, 2), cmap="inferno", alpha=0.6)
axes[2].set_title("smoothed (sigma = 2 px) over the photo")
fig.colorbar(overlay, ax=axes[2], fraction=0.046, label="smoothed sensitivity")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# The map is grainy (neighbouring pixels can have gradients of opposite sign), but its large values
# gather on the cat's face rather than on the blurred background near the edges. Notebooks 2 and 3 change the
# rule to get cleaner maps; notebook 4 turns maps into boxes.
#
# ### The same check on the real network
#
# Finite differences work on SqueezeNet too. In float32 rounding would swamp them, so we load a
# second copy of the weights in float64 and compare at the most sensitive pixels.

# %%
net64 = weights.load("squeezenet1_0").astype(np.float64)
x64 = x_cat.astype(np.float64)
g64 = saliency.gradient(net64, x64, target=t_cat)
strongest = np.argsort(-np.abs(g64).ravel())[:3 if FAST else 10]
fd64 = finite_differences(net64, x64, t_cat, h=1e-3, indices=strongest)
for i in strongest:
    c, r, col = np.unravel_index(i, g64.shape[1:])
    print(f"channel {c}, pixel ({r:3d}, {col:3d}): Eq. 1 {g64.flat[i]: .6f}   finite differences {fd64[i]: .6f}")
print("float32 map vs float64 map: max relative difference",
      f"{np.abs(gradient - g64).max() / np.abs(g64).max():.1e}")

# %% [markdown]
# ## Summary
#
# * Eq. 1, `s_i = g'(eta_i) * sum_k w_ki s_k`, is the chain rule written unit by unit: a linear
#   part (the transposed weights) and a multiplier (the derivative of the nonlinearity).
# * The library keeps the two apart: `nets` layers do `sum_k w_ki s_k` (for a convolution, a
#   transposed convolution; for max pooling, routing through the switches), and a `saliency` rule
#   supplies `g'(eta_i)`.
# * Centred finite differences check any backward pass, in float64, away from ReLU kinks.
# * The sensitivity map of a real photo, `max_c |df_t/dx_c|`, highlights the object, noisily.
#
# ## Exercises
#
# 1. Reduce the cat's gradient with `"l2"` and with `"sum"` instead of `"max_abs"`
#    (`postprocess.reduce_channels`). What does the signed sum show that the others hide?
# 2. Explain class 281 (`tabby, tabby cat`) and class 967 (`espresso`) for the same photo.
#    How different are the maps? (Compare them with `np.corrcoef`.)
# 3. Repeat the finite-difference check of the toy network with $h = 10^{-1}$ and $h = 10^{-12}$.
#    Explain both failures.
# 4. Show that the sensitivity map of a network without nonlinearities does not depend on the
#    input $x$ at all. What does that say about what a sensitivity map measures?
# 5. **Coursework.** `tutorials/assignments/1_backward_recursion.py` asks you to implement Eq. 1
#    for fully connected, convolution, ReLU and max-pool layers, and then the whole recursion.
#    Check your work with `sensloc grade 1 path/to/your/1_backward_recursion.py`.
