# %% [markdown]
# # 3. DeepLIFT: the secant instead of the tangent
#
# The gradient answers "what if this pixel changed a little?". DeepLIFT (Shrikumar et al., 2017)
# answers "how much did each pixel contribute to the *difference* between this image and a
# reference image?". It is again the recursion of Eq. 1, `s_i = g'(eta_i) * sum_k w_ki s_k`, with
# one change: at every ReLU the derivative (the slope of the tangent) is replaced by the slope of
# the secant between the reference and the input.
#
# **You will learn**
#
# 1. the rescale rule, `m = (g(eta) - g(eta_ref)) / (eta - eta_ref)`, and why a secant sees what a
#    saturated tangent misses;
# 2. to derive DeepLIFT's contributions by hand on a two-layer network and prove
#    summation-to-delta, `sum(C) == f_t(x) - f_t(x_ref)`;
# 3. to check summation-to-delta numerically on SqueezeNet, and what max pooling does to it;
# 4. how the choice of reference input (mean image, black, blurred) changes the map, and how
#    DeepLIFT compares with integrated gradients.
#
# **Set-up** as in notebook 1 (the SqueezeNet weights are fetched on first use).
# `SENSLOC_TUTORIAL_FAST=1` uses fewer integration steps for integrated gradients.
#
# **Questions.** Cells marked **Question** ask about what the notebook just computed; write your
# answer in the **Your answer** cell below each. Model answers for teachers are in
# `tutorials/answers/03_deeplift.md`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr
from skimage import data

from sensloc import nets
from sensloc import saliency
from sensloc import weights
from sensloc.data import images
from sensloc.saliency import postprocess

FAST = os.environ.get("SENSLOC_TUTORIAL_FAST", "0") not in ("", "0")
np.set_printoptions(precision=4, suppress=True)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. Secant versus tangent at one ReLU
#
# For a ReLU $g(\eta) = \max(\eta, 0)$ with forward input $\eta$ and reference input
# $\eta_{ref}$ (the same unit, when the network reads the reference image), the rescale rule of
# `saliency.rules.Rescale` uses the multiplier
#
# $$m = \frac{g(\eta) - g(\eta_{ref})}{\eta - \eta_{ref}}, \qquad s_{in} = m\, s,$$
#
# in the docstring's notation
#
#     m = (g(eta) - g(eta_ref)) / (eta - eta_ref)      where |eta - eta_ref| >= eps
#     m = g'(eta) = 1[eta > 0]                          otherwise
#     s_in = m * s
#
# With $\epsilon = 10^{-10}$, the gradient is used only where the secant is undefined. The multiplier
# always satisfies $m\,(\eta - \eta_{ref}) = g(\eta) - g(\eta_{ref})$: it carries the *difference*
# exactly, whatever the curvature between the two points. Two cases:

# %%
rescale = saliency.Rescale()
cases = {"unit turns on": (2.0, -1.0), "unit turns off": (-1.0, 1.0), "both off": (-2.0, -0.5),
         "equal (fallback)": (0.7, 0.7)}
for label, (eta, eta_ref) in cases.items():
    m = rescale.relu(np.array([1.0]), np.array([eta]), np.array([eta_ref]))[0] + 0.0   # + 0.0: no "-0"
    tangent = saliency.Gradient().relu(np.array([1.0]), np.array([eta]), None)[0]
    assert np.isclose(m * (eta - eta_ref), max(eta, 0) - max(eta_ref, 0))           # the secant's property
    print(f"{label:17s} eta = {eta:5.1f}, eta_ref = {eta_ref:5.1f}: tangent g'(eta) = {tangent:.3f}, "
          f"secant m = {m:.3f}")

eta_axis = np.linspace(-2.5, 2.5, 201)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
for ax, (label, (eta, eta_ref)) in zip(axes, list(cases.items())[:2]):
    m = rescale.relu(np.array([1.0]), np.array([eta]), np.array([eta_ref]))[0]
    ax.plot(eta_axis, np.maximum(eta_axis, 0), "k", label="g(eta) = max(eta, 0)")
    ax.plot(eta_axis, max(eta, 0) + (eta > 0) * (eta_axis - eta), "--",
            label=f"tangent at eta, slope {float(eta > 0):.2f}")
    ax.plot(eta_axis, max(eta_ref, 0) + m * (eta_axis - eta_ref), ":", lw=2, label=f"secant, slope m = {m:.2f}")
    ax.plot([eta_ref, eta], [max(eta_ref, 0), max(eta, 0)], "o", color="tab:red")
    ax.annotate("eta_ref", (eta_ref, max(eta_ref, 0)), textcoords="offset points", xytext=(-10, 8))
    ax.annotate("eta", (eta, max(eta, 0)), textcoords="offset points", xytext=(-5, 8))
    ax.set_ylim(-1, 3)
    ax.set_title(label)
    ax.set_xlabel("eta")
    ax.legend(loc="upper left", fontsize=8)
plt.show()

# %% [markdown]
# In the second case the unit is *off* for the input, so the gradient says it does not matter
# (tangent slope 0), yet it is exactly the unit whose switching off changed the output. The secant
# still sees it. This is the *saturation* problem of gradients that DeepLIFT was designed to fix.
#
# ## 2. Two layers by hand: contributions and summation-to-delta
#
# DeepLIFT runs the recursion with the rescale multipliers (this gives a multiplier $m_i$ for every
# input $x_i$) and multiplies by the difference from the reference, `C = (x - x_ref) * m`
# (`saliency.deeplift`). For the toy network of notebook 1,
# $f_t = \sum_k w^{(2)}_{tk}\, g(\eta_k) + b^{(2)}_t$ with $\eta_k = \sum_i w^{(1)}_{ki} x_i + b^{(1)}_k$:
#
# $$\sum_i C_i = \sum_i (x_i - x_{ref,i}) \sum_k w^{(1)}_{ki}\, m_k\, w^{(2)}_{tk}
#   = \sum_k w^{(2)}_{tk}\, m_k\, (\eta_k - \eta_{ref,k})
#   = \sum_k w^{(2)}_{tk}\, \big(g(\eta_k) - g(\eta_{ref,k})\big) = f_t(x) - f_t(x_{ref}).$$
#
# Every step is exact: the linear layers carry differences exactly, and the secant carries the
# difference through the ReLU exactly. That is **summation-to-delta**; it holds layer after layer
# for any depth.

# %%
toy = nets.Network("toy", [nets.Flatten("flatten"), nets.Linear("fc1", 4, 5), nets.ReLU("relu1"),
                           nets.Linear("fc2", 5, 3)],
                   in_channels=4, input_size=(1, 1), default_input_size=(1, 1), num_classes=3)
nets.random_parameters(toy, seed=1).astype(np.float64)
rng = np.random.default_rng(0)
x = rng.normal(size=(1, 4, 1, 1))
x_ref = rng.normal(size=(1, 4, 1, 1))
t = int(toy(x).argmax())

W1, b1, W2 = toy.layer("fc1").weight, toy.layer("fc1").bias, toy.layer("fc2").weight
eta, eta_ref = W1 @ x.ravel() + b1, W1 @ x_ref.ravel() + b1
m_hidden = np.where(np.abs(eta - eta_ref) >= 1e-10,
                    (np.maximum(eta, 0) - np.maximum(eta_ref, 0)) / (eta - eta_ref), eta > 0)
m_input = W1.T @ (m_hidden * W2[t])                  # the recursion with secants
C_by_hand = (x.ravel() - x_ref.ravel()) * m_input     # C = (x - x_ref) * m

C_library, delta = saliency.deeplift(toy, x, target=t, reference=x_ref, return_delta=True)
difference = toy(x)[0, t] - toy(x_ref)[0, t]
print("contributions by hand", C_by_hand)
print("saliency.deeplift    ", C_library.ravel())
print(f"sum(C) = {C_by_hand.sum():.10f},  f_t(x) - f_t(x_ref) = {difference:.10f},  "
      f"library's delta = {delta[0]:.1e}")
gxi = (x - x_ref).ravel() * saliency.gradient(toy, x, target=t).ravel()
print(f"for comparison, gradient * (x - x_ref) sums to {gxi.sum():.10f}")
print("hidden units on for x:", (eta > 0).astype(int), " for x_ref:", (eta_ref > 0).astype(int))
# Both checks compare clearly nonzero numbers, relative to their size.
assert np.abs(C_by_hand).min() > 1e-3 and abs(difference) > 1e-2
assert np.allclose(C_library.ravel(), C_by_hand, rtol=1e-12, atol=0)
assert abs(C_by_hand.sum() - difference) < 1e-12 * np.abs(C_by_hand).sum()
assert np.sign(gxi.sum()) != np.sign(difference)      # Question 1 asks why

# %% [markdown]
# **Question 3.1.** Gradient times difference, `(x - x_ref) * df_t/dx`, sums to a number of the
# opposite sign from $f_t(x) - f_t(x_{ref})$ here. Use the printed on/off states of the hidden
# units to explain why the tangent fails and the secant does not.

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## 3. Summation-to-delta on SqueezeNet
#
# On the real network, with the chelsea photo and the *zero* reference (zero in preprocessed space,
# i.e. the training set's mean colour; `saliency.make_reference`).
#
# Max pooling needs a decision. Its secant is not unique when the input and the reference choose
# different winners in a window. `Rescale(max_pool="difference")` (the default, Captum's choice)
# sends each window's output difference to the winners and keeps summation-to-delta exact;
# `max_pool="gradient"` (the DeepLIFT paper's choice) routes through the input's switches, as the
# gradient does, and summation-to-delta then holds only where both passes pick the same winner.

# %%
net = weights.load("squeezenet1_0", download=True)  # fetches the 5 MB file once if missing
prep = net.preprocessing
resized = images.resize_image(data.chelsea(), prep.input_size, prep.resize)
x_cat = prep.apply(resized)[None]
t_cat = int(net(x_cat).argmax())
name = net.class_names[t_cat]
print(f"class {t_cat}: {name}")

f_difference = float(net(x_cat)[0, t_cat] - net(saliency.make_reference(net, x_cat, "zero"))[0, t_cat])
relative_delta = {}
for max_pool in ("difference", "gradient"):
    C, delta = saliency.deeplift(net, x_cat, target=t_cat, reference="zero", max_pool=max_pool,
                                 return_delta=True)
    relative_delta[max_pool] = abs(C.sum() - f_difference) / abs(f_difference)
    print(f"max_pool={max_pool!r:13s}: sum(C) = {C.sum():9.4f}, f_t(x) - f_t(x_ref) = {f_difference:9.4f}, "
          f"relative error {relative_delta[max_pool]:.1e}")
# float32 rounding over ~10^5 terms allows about 1e-6 relative; the paper's max-pool rule is off by far more.
assert relative_delta["difference"] < 1e-5 < 1e-3 < relative_delta["gradient"]

# %% [markdown]
# **Question 3.2.** With `max_pool="gradient"` the sum misses $f_t(x) - f_t(x_{ref})$ by the printed
# relative error. In a window where the input and the reference pick different winners, what does
# routing through the input's switch get wrong? Which quantity would have to be sent back instead?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## 4. The reference input changes the map
#
# DeepLIFT explains a *difference*, so the answer depends on the question: different from what?
# `saliency.make_reference` offers `"zero"` (the mean image), `"black"` (an all-black photo,
# preprocessed) and `"blur"` (the photo blurred by a Gaussian of 10 pixels: "what do the details
# add?"). We show the contributions summed over colour channels, `m[i, j] = sum_c a[c, i, j]`, which
# keeps their sign (red: evidence for the class, blue: against), on a symmetric colour scale clipped
# at the 99.5th percentile of the absolute values (a few extreme pixels would otherwise wash out the
# rest).

# %%
references = ["zero", "black", "blur"]
top_share = {}
fig, axes = plt.subplots(2, len(references), figsize=(5 * len(references), 9.4), constrained_layout=True)
for col, reference in enumerate(references):
    x_ref = saliency.make_reference(net, x_cat, reference)
    C, delta = saliency.deeplift(net, x_cat, target=t_cat, reference=reference, return_delta=True)
    f_ref = net(x_ref)[0, t_cat]
    axes[0, col].imshow(prep.invert(x_ref[0]))
    axes[0, col].set_title(f"reference '{reference}': f_t(x_ref) = {f_ref:.2f}")
    heat = postprocess.reduce_channels(C, "sum")[0]
    limit = np.percentile(np.abs(heat), 99.5)
    image = axes[1, col].imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[1, col].set_title(f"DeepLIFT ({reference}), class {name.split(',')[0]}\n"
                           f"sum(C) = {C.sum():.2f} = f_t(x) - f_t(x_ref), delta {delta[0]:.0e}")
    fig.colorbar(image, ax=axes[1, col], fraction=0.046, label="contribution (sum over channels)",
                 extend="both")
    # How concentrated is the map? The share of the total |contribution| held by its 5% largest pixels.
    size = np.sort(np.abs(heat).ravel())[::-1]
    top_share[reference] = size[:size.size // 20].sum() / size.sum()
for ax in axes.ravel():
    ax.axis("off")
plt.show()
print(f"f_t(x) = {net(x_cat)[0, t_cat]:.2f}")
for reference, share in top_share.items():
    print(f"reference {reference!r:8s}: the 5% largest pixels hold {share:.0%} of the total |contribution|")
assert top_share["blur"] > top_share["black"] + 0.05    # the prose below says the blur map is sparser

# %% [markdown]
# The three totals are close (the cat scores low on all three references: see the titles), but the
# maps are not. Since `C = (x - x_ref) * m`, a pixel can only contribute where the photo differs
# from the reference. Every pixel of the photo differs strongly from black, and the black-reference
# map is a dense cloud over the middle of the face. The blurred reference agrees with the photo
# everywhere except at edges and fine texture, so its map follows outlines: the rims of the eyes,
# the nose, the edges of the ears; the printed shares measure how much more concentrated it is.
# Each answers a different question.

# %% [markdown]
# **Question 3.3.** The blurred photo is still recognisably a cat to us, yet the network gives it a
# cat score close to that of the black image (compare $f_t(x_{ref})$ in the titles with
# $f_t(x)$). What does that tell you about what SqueezeNet's cat score relies on, and why does it
# make the blur reference a useful question to ask?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## 5. DeepLIFT and integrated gradients
#
# Integrated gradients (Sundararajan et al., 2017) reach summation-to-delta ("completeness") another
# way: average the gradient along the straight path from the reference to the input,
#
# $$IG(x) = (x - x_{ref}) \int_0^1 \frac{\partial f_t}{\partial x}\big(x_{ref} + \alpha (x - x_{ref})\big)\, d\alpha$$
#
# (docstring: `IG(x) = (x - x_ref) * int_0^1 df_t/dx (x_ref + alpha (x - x_ref)) d alpha`). The
# integral is approximated with a quadrature of a few `steps`, so completeness holds only
# approximately, and each step costs a forward and a backward pass. DeepLIFT costs two forward
# passes and one backward pass, and is exact.

# %%
steps_list = (4, 8) if FAST else (4, 8, 16, 32, 64)
for steps in steps_list:
    ig, ig_delta = saliency.integrated_gradients(net, x_cat, target=t_cat, reference="zero",
                                                 steps=steps, return_delta=True)
    print(f"integrated gradients, {steps:2d} steps: completeness error {ig_delta[0]: .4f} "
          f"(of f_t(x) - f_t(x_ref) = {ig.sum() - ig_delta[0]:.3f})")
deeplift_zero = saliency.deeplift(net, x_cat, target=t_cat, reference="zero")

fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), constrained_layout=True)
axes[0].imshow(resized)
axes[0].set_title(f"input: {name}")
for ax, (label, attribution) in zip(axes[1:], [("DeepLIFT (rescale)", deeplift_zero),
                                               (f"integrated gradients ({steps_list[-1]} steps)", ig)]):
    heat = postprocess.reduce_channels(attribution, "sum")[0]
    limit = np.percentile(np.abs(heat), 99.5)
    image = ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"{label}, reference 'zero'\nclass {name.split(',')[0]}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="attribution (sum over channels)")
for ax in axes:
    ax.axis("off")
plt.show()
rho = spearmanr(postprocess.reduce_channels(deeplift_zero, "sum").ravel(),
               postprocess.reduce_channels(ig, "sum").ravel())[0]
print(f"rank correlation of the two maps: {rho:.2f}")

# %% [markdown]
# ## Summary
#
# * DeepLIFT's rescale rule replaces the tangent `g'(eta)` by the secant
#   `m = (g(eta) - g(eta_ref)) / (eta - eta_ref)`; everything else in the recursion stays.
# * Contributions `C = (x - x_ref) * m` satisfy summation-to-delta,
#   `sum(C) == f_t(x) - f_t(x_ref)`, exactly: by hand on two layers, numerically on SqueezeNet
#   (with the `"difference"` max-pool rule; the paper's `"gradient"` max-pool rule breaks it).
# * The reference is part of the question; a blurred reference explains the detail, the mean
#   image explains the whole object.
# * Integrated gradients reach the same property only approximately, at the cost of many passes.
#
# ## Exercises
#
# 1. Show on the toy network that DeepLIFT equals gradient x (x - x_ref) when no ReLU changes
#    state between the reference and the input. Why?
# 2. Use as reference the photo shifted by a few pixels (`np.roll`). What does the map show now?
# 3. Plot the completeness error of integrated gradients against the number of steps for the
#    `"riemann_left"` and `"gausslegendre"` methods (`saliency.integration_points`).
# 4. Compare DeepLIFT with `max_pool="difference"` and `"gradient"` maps: where do they differ?
# 5. **Coursework.** `coursework/assignments/2_rules.py`, parts 3 and 5: the rescale rule and
#    DeepLIFT's contributions; check with `sensloc grade 2 FILE`.
