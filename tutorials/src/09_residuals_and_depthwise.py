# %% [markdown]
# # 9. Residual blocks and depthwise convolutions: MobileNetV2 through the same recursion
#
# MobileNetV2 (Sandler et al., 2018) is built from *inverted residual blocks*: a 1x1 convolution
# widens the input, a 3x3 *depthwise* convolution filters every channel on its own, a linear 1x1
# convolution narrows it back, and where the shape allows the block's input is *added* to its
# output. The nonlinearity is ReLU6, $g(\eta) = \min(\max(\eta, 0), 6)$. None of this needs a
# new idea: every step is still Eq. 1, `s_i = g'(eta_i) * sum_k w_ki s_k`.
#
# **You will learn**
#
# 1. that a depthwise convolution is an ordinary convolution whose weights are zero between
#    different channels, so its backward pass is a transposed convolution per channel;
# 2. what each rule does at a ReLU6, whose derivative `1[0 < eta < 6]` has two kinks;
# 3. how a residual addition sends the signal down both branches and sums it where they meet,
#    checked against finite differences;
# 4. that DeepLIFT's summation-to-delta survives the addition (it is linear).
#
# **Set-up**: nothing to download; the blocks have random weights. If the shared data folder is
# present (`SENSLOC_SHARED`, see the README), the last section converts the real quantized
# MobileNetV2 and explains a photo. `SENSLOC_TUTORIAL_FAST=1` uses smaller inputs.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sensloc import nets
from sensloc import saliency
from sensloc.nets import reference

FAST = os.environ.get("SENSLOC_TUTORIAL_FAST", "0") not in ("", "0")
np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. A depthwise convolution is a convolution with a block-diagonal weight
#
# `nets.DepthwiseConv2d` computes
# `y[n, c] = b[c] + sum_{i,j} w[c, 0, i, j] * x_pad[n, c, s*oh + i, s*ow + j]`: output channel
# `c` reads input channel `c` only. Put its `(C, 1, K, K)` kernels on the diagonal of a full
# `(C, C, K, K)` weight (zeros elsewhere) and an ordinary `Conv2d` computes the same thing, forward
# *and* backward: in `sum_k w_ki s_k` the zero weights carry nothing, so the signal of channel `c`
# returns to channel `c` only.

# %%
C, K = 3, 3
depthwise = nets.DepthwiseConv2d("dw", C, K, stride=2, padding=1)
depthwise.weight = rng.normal(size=(C, 1, K, K))
depthwise.bias = rng.normal(size=C)
full = nets.Conv2d("full", C, C, K, stride=2, padding=1)
full.weight = np.zeros((C, C, K, K))
for c in range(C):
    full.weight[c, c] = depthwise.weight[c, 0]
full.bias = depthwise.bias.copy()

x = rng.normal(size=(1, C, 7, 7))
y_dw, cache_dw = depthwise.forward(x)
y_full, cache_full = full.forward(x)
dy = rng.normal(size=y_dw.shape)
print("forward  max |depthwise - full conv|:", np.abs(y_dw - y_full).max())
print("backward max |depthwise - full conv|:",
      np.abs(depthwise.backward(dy, cache_dw) - full.backward(dy, cache_full)).max())

# %% [markdown]
# The signal sent back into channel 0 depends on channel 0's output signal alone: change the
# signal of the other channels and channel 0's input signal does not move.

# %%
dy2 = dy.copy()
dy2[:, 1:] = rng.normal(size=dy2[:, 1:].shape)
dx, dx2 = depthwise.backward(dy, cache_dw), depthwise.backward(dy2, cache_dw)
print("channel 0 unchanged:", np.array_equal(dx[:, 0], dx2[:, 0]),
      "| channels 1-2 changed:", not np.allclose(dx[:, 1:], dx2[:, 1:]))
# The NumPy of it, one kernel tap at a time (nets/reference.py):
print(reference.depthwise_conv2d_backward_input.__doc__.split("\n\n")[1])

# %% [markdown]
# ## 2. ReLU6: two kinks, and what each rule does there
#
# The derivative of ReLU6 is `1[0 < eta < 6]`: zero below 0 *and* above 6 (the unit is
# saturated). Each rule of `saliency.rules` has a `relu6` step beside its `relu` step:
#
# | rule | ReLU | ReLU6 |
# |---|---|---|
# | gradient | `1[eta > 0] s` | `1[0 < eta < 6] s` |
# | guided | `1[eta > 0] 1[s > 0] s` | `1[0 < eta < 6] 1[s > 0] s` |
# | deconvnet | `1[s > 0] s` | `1[s > 0] s` (the forward input plays no part) |
# | DeepLIFT | secant of ReLU | secant of ReLU6 |
#
# The secant sees what the tangent misses: a unit that went from 2 (reference) to 9 (input) is
# saturated at the input, so its gradient is 0, but it did change the output by 4.

# %%
eta = np.array([-1.0, 3.0, 9.0, 9.0])
eta_ref = np.array([-2.0, 1.0, 2.0, 8.0])
s = np.array([1.0, -1.0, 1.0, 1.0])
for rule in (saliency.Gradient(), saliency.Guided(), saliency.Deconvnet(), saliency.Rescale()):
    print(f"{rule.name:10s}", rule.relu6(s, eta, eta_ref))

# %% [markdown]
# ## 3. A residual block: the signal takes both roads
#
# `nets.InvertedResidual` with stride 1 and as many output as input channels computes
#
#     h = relu6(expand(x));  h = relu6(depthwise(same_pad(h)));  y = project(h) + x
#
# The addition `y = F(x) + x` is linear with weight 1 on each input, so Eq. 1 gives
# `s_x = (dF/dx)^T s_y + s_y`: the signal at `y` goes back through the block's layers, *and*
# unchanged along the skip connection, and the two add at `x`. Below, the two roads by hand,
# then against finite differences.

# %%
block = nets.InvertedResidual("block", 4, 6, 4, stride=1)
for arrays in block.parameters().values():
    for key in arrays:
        arrays[key][...] = rng.normal(scale=0.5, size=arrays[key].shape)
net = nets.Network("one_block", [block], 4, None, (6, 6), 4).astype(np.float64)
block = net.layers[0]

x = rng.normal(size=(1, 4, 6, 6))
y, cache = block.forward(x)
s_y = rng.normal(size=y.shape)

# The branch alone: the layers inside the block, last to first.
s = s_y
for step in reversed(block.steps):
    s = step.backward(s, cache[step.name])
through_branch, along_skip = s, s_y
total = block.backward(s_y, cache)
print("block.backward == branch + skip:", np.allclose(total, through_branch + along_skip))
print("share of the signal's size along the skip:",
      np.linalg.norm(along_skip) / (np.linalg.norm(through_branch) + np.linalg.norm(along_skip)))

# Finite differences of the scalar sum(y * s_y) at a few input entries.
eps = 1e-6
for index in [(0, 0, 0, 0), (0, 2, 3, 4), (0, 3, 5, 5)]:
    bumped = x.copy()
    bumped[index] += eps
    numeric = ((block.forward(bumped)[0] - y) * s_y).sum() / eps
    print(index, f"recursion {total[index]: .6f}  finite difference {numeric: .6f}")

# %% [markdown]
# ## 4. DeepLIFT through the addition
#
# The secant rule acts at the two ReLU6s; the convolutions and the addition are linear and
# pass differences on exactly. So summation-to-delta holds through the block as it does
# through a plain chain: `sum((x - x_ref) * m) == sum(s_y * (y(x) - y(x_ref)))`.

# %%
x_ref = rng.normal(size=x.shape)
trace, ref_trace = net.forward(x), net.forward(x_ref)
m = net.backward(trace, s_y, rule=saliency.Rescale(), ref_trace=ref_trace)
lhs = ((x - x_ref) * m).sum()
rhs = (s_y * (trace.output - ref_trace.output)).sum()
print(f"sum of contributions {lhs:.10f}\ndifference of outputs {rhs:.10f}")
g = net.backward(trace, s_y)
print(f"gradient x (x - x_ref) instead: {((x - x_ref) * g).sum():.10f} (no such identity)")

# %% [markdown]
# ## 5. The whole network
#
# `nets.build("mobilenet_v2")` chains a stem, 17 such blocks (10 of them with the addition),
# a 1x1 convolution to 1280 channels, a global average pool and a classifier; any input size
# works. With random weights, one gradient entry against a finite difference:

# %%
side = 64 if FAST else 128
mobilenet = nets.random_parameters(nets.build("mobilenet_v2"), seed=0).astype(np.float64)
x = rng.normal(size=(1, 3, side, side))
gradient = saliency.gradient(mobilenet, x, 5)
# The largest entry, so that the check compares two clearly nonzero numbers.
entry = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(gradient)), gradient.shape))
plus, minus = x.copy(), x.copy()
plus[entry] += 1e-5
minus[entry] -= 1e-5
numeric = (mobilenet(plus)[0, 5] - mobilenet(minus)[0, 5]) / 2e-5  # centred difference
relative = abs(gradient[entry] - numeric) / abs(numeric)
print(f"input entry {entry}: gradient {gradient[entry]:.8f}, finite difference {numeric:.8f}, "
      f"relative error {relative:.1e}")
assert abs(numeric) > 1e-6 and relative < 1e-6

# %% [markdown]
# With the real weights (the quantized TFLite file converted by `sensloc weights convert`),
# the maps of the four rules for a photo, when the shared data is at hand:

# %%
shared = Path(os.environ.get("SENSLOC_SHARED", "../../shared"))
source = shared / "weights" / "mobilenet-tflite" / "mobilenet_v2_1.0_224_quant.tflite"
if source.is_file():
    import tempfile

    from skimage import data

    from sensloc import weights
    from sensloc.data import images
    from sensloc.saliency import postprocess
    real = weights.load(weights.convert(source, out=Path(tempfile.mkdtemp()) / "mobilenet_v2.h5"))
    pre = real.preprocessing
    photo = images.resize_image(data.chelsea(), pre.input_size, pre.resize)
    xb = pre.apply(photo)[None]
    maps = {"gradient": saliency.gradient(real, xb),
            "guided": saliency.guided_backprop(real, xb),
            "deconvnet": saliency.deconvnet(real, xb),
            "DeepLIFT (blur)": saliency.deeplift(real, xb, reference="blur")}
    top = int(real(xb).argmax())
    print("top-1:", top, real.class_names[top])
    fig, axes = plt.subplots(1, 5, figsize=(15, 3))
    axes[0].imshow(photo)
    axes[0].set_title(f"input: {real.class_names[top].split(',')[0]}")
    for ax, (name, attribution) in zip(axes[1:], maps.items()):
        heat = postprocess.reduce_channels(attribution, "max_abs")[0]
        shown = ax.imshow(heat, cmap="inferno", vmin=0, vmax=np.percentile(heat, 99))
        ax.set_title(f"{name} (clipped at the 99th percentile)", fontsize=8)
        fig.colorbar(shown, ax=ax, fraction=0.046)
    for ax in axes:
        ax.axis("off")
    plt.show()
else:
    print(f"{source} is absent: the real network is skipped")

# %% [markdown]
# ## Summary
#
# - A depthwise convolution is a convolution whose weight is zero between different channels:
#   its backward pass is the same transposed convolution, one channel at a time.
# - ReLU6 is a nonlinearity with two kinks; the gradient passes the signal where
#   `0 < eta < 6`, guided backprop gates it there and on the signal's sign, deconvnet looks at
#   the signal only, and DeepLIFT's secant needs no change.
# - A residual addition is linear: the signal goes unchanged down both branches and the two
#   signals add where the branches meet, so summation-to-delta still holds.
# - The whole MobileNetV2 is these pieces chained; its gradient matches a finite difference.
#
# ## Exercises
#
# 1. Write the backward pass of a depthwise convolution with stride 2 by hand for a 1-channel
#    5x5 input, and check it against `reference.depthwise_conv2d_backward_input`.
# 2. Remove the skip connection (`block.residual = False`) and compare the input signal's size
#    with and without it on the random MobileNetV2: which road carries more?
# 3. Why does deconvnet ignore the cap at 6 while guided backprop does not?
