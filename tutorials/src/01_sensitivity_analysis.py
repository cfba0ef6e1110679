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
#
# **Questions.** A few cells marked **Question** ask about what the notebook just computed; write
# your answer in the **Your answer** cell below each. Model answers for teachers are in
# `tutorials/answers/01_sensitivity_analysis.md`.

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
assert np.allclose(library, s_input, rtol=1e-12, atol=0)

trace = toy.forward(x)
signal = saliency.score_signal(trace.output, np.array([t]))
after_relu = toy.backward(trace, signal, stop="relu1")    # sum_k w_ki s_k (linear part only)
before_relu = toy.backward(trace, signal, stop="fc1")     # times g'(eta_i): the hidden s_i
print("linear part       ", after_relu[0])
print("times g'(eta)     ", before_relu[0], " = s_hidden:", np.allclose(before_relu[0], s_hidden))
assert np.allclose(before_relu[0], s_hidden, rtol=1e-12, atol=0)

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


def relative_error(a, b):
    """max |a - b| / max |b|: the size of the disagreement compared with the size of the values."""
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max()


fd = np.array(list(finite_differences(toy, x, t).values()))
print("finite differences", fd)
print(f"smallest |s input| = {np.abs(s_input).min():.3f}; "
      f"relative error of Eq. 1 against finite differences = {relative_error(s_input, fd):.1e}")
# A check of 0 against 0 proves nothing: every compared entry must be clearly nonzero.
assert np.abs(s_input).min() > 1e-3 and relative_error(s_input, fd) < 1e-7

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
# The library's code for both equations is `sensloc.nets.reference.conv2d_forward` and
# `sensloc.nets.reference.conv2d_backward_input` (file `nets/reference.py`): the NumPy backend that
# `nets.Conv2d` runs by default. They loop over the kernel taps `(i, j)` and let NumPy handle all
# `n, o, oh, ow, c` at once. Here are the same two equations written loop by loop, exactly as
# stated, checked against the library's functions on a small batch (2 images, 2 input channels,
# 3 output channels, 7x7, 3x3 kernel, stride 2, padding 1):

# %%
def conv2d_naive(x, w, b, s, p):
    """y[n, o, oh, ow] = b[o] + sum_{c,i,j} w[o, c, i, j] * x_pad[n, c, s*oh + i, s*ow + j]"""
    N, C, H, W = x.shape
    O, _, K, _ = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    y = np.zeros((N, O, (H + 2 * p - K) // s + 1, (W + 2 * p - K) // s + 1))
    for n, o, oh, ow in np.ndindex(y.shape):
        y[n, o, oh, ow] = b[o]
        for c, i, j in np.ndindex(C, K, K):
            y[n, o, oh, ow] += w[o, c, i, j] * x_pad[n, c, s * oh + i, s * ow + j]
    return y


def conv2d_backward_input_naive(dy, w, input_shape, s, p):
    """dx_pad[n, c, s*oh + i, s*ow + j] += w[o, c, i, j] * dy[n, o, oh, ow], padding dropped."""
    N, C, H, W = input_shape
    _, _, K, _ = w.shape
    dx_pad = np.zeros((N, C, H + 2 * p, W + 2 * p))
    for n, o, oh, ow in np.ndindex(dy.shape):
        for c, i, j in np.ndindex(C, K, K):
            dx_pad[n, c, s * oh + i, s * ow + j] += w[o, c, i, j] * dy[n, o, oh, ow]
    return dx_pad[:, :, p:p + H, p:p + W]


x_conv, w_conv, b_conv = rng.normal(size=(2, 2, 7, 7)), rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)
y_naive = conv2d_naive(x_conv, w_conv, b_conv, 2, 1)
dy_conv = rng.normal(size=y_naive.shape)
dx_naive = conv2d_backward_input_naive(dy_conv, w_conv, x_conv.shape, 2, 1)
y_library = reference.conv2d_forward(x_conv, w_conv, b_conv, 2, 1)
dx_library = reference.conv2d_backward_input(dy_conv, w_conv, x_conv.shape, 2, 1)
forward_error, backward_error = relative_error(y_library, y_naive), relative_error(dx_library, dx_naive)
print(f"forward : relative error naive vs reference.conv2d_forward        = {forward_error:.1e}")
print(f"backward: relative error naive vs reference.conv2d_backward_input = {backward_error:.1e}")
print("largest |dx| =", f"{np.abs(dx_naive).max():.2f}", "| layers run on backend:", nets.current_backend())
assert np.abs(dx_naive).max() > 1 and forward_error < 1e-12 and backward_error < 1e-12

# %% [markdown]
# Now let us build $A$ explicitly for a tiny convolution (one channel, 6x6 input, 3x3 kernel,
# stride 2, padding 1) by pushing the unit vectors through the naive forward pass, and check that
# the naive backward pass is $A^T$.

# %%
H = W = 6
K, stride, padding = 3, 2, 1
w = rng.normal(size=(1, 1, K, K))
zero_bias = np.zeros(1)
columns = []
for i in range(H * W):
    unit = np.zeros((1, 1, H, W))
    unit.flat[i] = 1.0
    columns.append(conv2d_naive(unit, w, zero_bias, stride, padding).ravel())
A = np.stack(columns, axis=1)
out_shape = (1, 1, 3, 3)
print("output", out_shape[2:], "-> A has shape", A.shape, "(outputs x inputs)")

dy = rng.normal(size=out_shape)
dx_backward = conv2d_backward_input_naive(dy, w, (1, 1, H, W), stride, padding)
dx_matrix = (A.T @ dy.ravel()).reshape(1, 1, H, W)
print(f"relative error of the naive backward pass against A^T dy = "
      f"{relative_error(dx_backward, dx_matrix):.1e}")
assert np.abs(dx_matrix).max() > 0.1 and relative_error(dx_backward, dx_matrix) < 1e-12

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
print(f"relative error of the transposed convolution against A^T dy = "
      f"{relative_error(dx_scipy, dx_matrix[0, 0]):.1e}")
assert relative_error(dx_scipy, dx_matrix[0, 0]) < 1e-12

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
print("total signal received:", routed.sum(), "| largest share one pixel received:", routed.max())
assert routed.sum() == pooled.size    # every window sends its signal to exactly one pixel

# %% [markdown]
# **Question 1.1.** Read the printed array: the 9 windows sent a signal of 1 each, and the pixels
# received 9 in total. How can one pixel receive more than 1? Why can no pixel of a 3x3, stride-2
# pool ever receive more than 4, and which pixels of the 7x7 input can receive 4 at all?

# %% [markdown]
# **Your answer:** *(write it here)*

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
# Check only entries whose gradient is clearly nonzero (at least 5% of the largest), so that each
# comparison can fail; the error of each is measured relative to the entry itself.
candidates = np.flatnonzero(np.abs(g_small) >= 0.05 * np.abs(g_small).max())
checked = rng.choice(candidates, size=min(40, candidates.size) if FAST else candidates.size, replace=False)
fd_small = finite_differences(small, x_small, t_small, indices=checked)
error = max(abs(fd_small[i] - g_small.flat[i]) / abs(g_small.flat[i]) for i in checked)
print(f"{len(checked)} of {x_small.size} inputs checked (|gradient| from "
      f"{np.abs(g_small.flat[checked]).min():.4f} to {np.abs(g_small).max():.4f}); "
      f"largest relative error {error:.1e}")
assert len(checked) >= 20 and error < 1e-5

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

# A few pixels have far larger values than the rest; a colour scale that reaches them paints
# everything else black. So the scale stops at the 99th percentile (brighter pixels saturate).
clip = np.percentile(heat, 99)
smoothed = postprocess.gaussian_smooth(heat, 2)
face = (slice(40, 200), slice(70, 190))   # rows, columns: forehead, eyes, nose, muzzle (drawn by hand)

fig, axes = plt.subplots(1, 3, figsize=(13, 4.3), constrained_layout=True)
axes[0].imshow(resized)
axes[0].set_title(f"input (227 x 227): {name}")
image = axes[1].imshow(heat, cmap="inferno", vmin=0, vmax=clip)
axes[1].set_title(f"sensitivity max_c |df/dx_c|, class {t_cat}\ncolour scale clipped at the 99th percentile")
fig.colorbar(image, ax=axes[1], fraction=0.046, label="|d logit / d pixel|", extend="max")
axes[1].add_patch(plt.Rectangle((70 - 0.5, 40 - 0.5), 120, 160, fill=False, color="cyan", lw=1.5))
axes[2].imshow(resized)
overlay = axes[2].imshow(smoothed, cmap="inferno", alpha=0.6, vmin=0, vmax=np.percentile(smoothed, 99))
axes[2].set_title("smoothed (sigma = 2 px) over the photo\n(clipped at its 99th percentile)")
fig.colorbar(overlay, ax=axes[2], fraction=0.046, label="smoothed sensitivity", extend="max")
for ax in axes:
    ax.axis("off")
plt.show()

hot = heat >= np.percentile(heat, 95)                      # the 5% most sensitive pixels
face_area = heat[face].size / heat.size
face_share = hot[face].sum() / hot.sum()
print(f"the cyan box covers {face_area:.0%} of the image and holds {face_share:.0%} of the 5% hottest pixels")
print(f"mean sensitivity: in the box {heat[face].mean():.2e}, in the blurred background strip at the "
      f"right (columns 212-226) {heat[:, 212:].mean():.2e}")
assert face_share > 1.5 * face_area and heat[face].mean() > 2 * heat[:, 212:].mean()

# %% [markdown]
# The cat fills most of this photo, so "on the cat" says little. What the figure does show: the map
# is grainy (neighbouring pixels can have gradients of opposite sign), and its bright pixels crowd
# the middle of the face, from the forehead stripes between the eyes down to the nose (the cyan
# box, drawn by hand; a second patch lies near the ear at the top left), while the white fur of
# the lower-left cheek and the blurred background strip at the right edge stay dark. The two
# printed numbers measure this; the `assert` fails if they stop saying so. Notebooks 2 and 3
# change the rule to get cleaner maps; notebook 4 turns maps into boxes.

# %% [markdown]
# **Question 1.2.** The colour scale stops at the 99th percentile. Compute `heat.max() / clip`: how
# much brighter is the brightest pixel than the top of the colour scale, and what would the figure
# look like without the clipping?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# **Question 1.3.** The photo's cat is squashed from 451 x 300 to 227 x 227 (`prep.resize` is
# `"squash"`). Does the sensitivity map depend on the squash? Which pixels of the *original* photo
# does pixel `(r, c)` of the map stand for?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
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
    print(f"channel {c}, pixel ({r:3d}, {col:3d}): Eq. 1 {g64.flat[i]: .8f}   "
          f"finite differences {fd64[i]: .8f}")
error64 = max(abs(fd64[i] - g64.flat[i]) / abs(g64.flat[i]) for i in strongest)
print(f"largest relative error {error64:.1e}")
assert error64 < 1e-4     # the strongest entries are far from zero (printed above)
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
# * The sensitivity map of a real photo, `max_c |df_t/dx_c|`, is grainy; on the cat its hottest
#   pixels crowd the middle of the face. Clip the colour scale (here at the 99th percentile) or a
#   few extreme pixels hide everything else.
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
# 5. **Coursework.** `coursework/assignments/1_backward_recursion.py` asks you to implement Eq. 1
#    for fully connected, convolution, ReLU and max-pool layers, and then the whole recursion.
#    Check your work with `sensloc grade 1 path/to/your/1_backward_recursion.py`.
