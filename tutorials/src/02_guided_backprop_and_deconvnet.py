# %% [markdown]
# # 2. Guided backpropagation and deconvnet: two other ReLU rules
#
# Notebook 1 derived the backward recursion of Eq. 1, `s_i = g'(eta_i) * sum_k w_ki s_k`, and
# noted that the library keeps its two halves apart: the network supplies the linear part
# `sum_k w_ki s_k`, a *rule* supplies the multiplier at every ReLU. Two famous visualization
# methods are nothing but other choices of that multiplier.
#
# **You will learn**
#
# 1. the ReLU rules of the gradient, of deconvnet (Zeiler & Fergus, 2014) and of guided
#    backpropagation (Springenberg et al., 2015), and what each keeps and drops;
# 2. how to run the same recursion with another rule (`Network.backward(..., rule=...)`) and how
#    to write a rule of your own;
# 3. how the three maps of a real photo compare, and how much of the signal each rule lets through;
# 4. two sanity checks: does the map depend on the class, and on the trained weights
#    (the weight-randomization test of Adebayo et al., 2018)?
#
# **Set-up** as in notebook 1: `pip install -e .`; the SqueezeNet 1.0 weights (5 MB) are fetched
# on first use (`sensloc weights fetch squeezenet1_0`); the photos ship with scikit-image.
# `SENSLOC_TUTORIAL_FAST=1` evaluates fewer randomization stages.

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
np.set_printoptions(precision=3, suppress=True)

net = weights.load("squeezenet1_0", download=True)  # fetches the 5 MB file once if missing
prep = net.preprocessing
print("fast mode" if FAST else "full mode", "|", net)

# %% [markdown]
# ## 1. Three rules at one ReLU
#
# Write `s` for the signal arriving at a ReLU's output and `eta` for the ReLU's forward input. In the
# notation of `saliency/rules.py`, the signal sent on to the ReLU's input is
#
# | rule | signal at the ReLU's input | depends on |
# |---|---|---|
# | gradient (Eq. 1) | `s_in = g'(eta) * s = 1[eta > 0] * s` | the forward pass |
# | deconvnet | `s_in = 1[s > 0] * s` | the backward signal |
# | guided backpropagation | `s_in = 1[eta > 0] * 1[s > 0] * s` | both |
#
# In LaTeX: $s_{in} = \mathbb{1}[\eta > 0]\, s$, $\;s_{in} = \mathbb{1}[s > 0]\, s$ and
# $\;s_{in} = \mathbb{1}[\eta > 0]\, \mathbb{1}[s > 0]\, s$.
#
# In `saliency/rules.py` each rule's `relu` method is that equation as one NumPy expression, e.g.
# `(eta > 0) * (signal > 0) * signal` for guided backpropagation, and that is the code that runs
# here (the default "numpy" backend, `nets.current_backend()`). After `nets.use_backend("numba")`
# the same rules run as fused one-pass Numba kernels instead, with the same numbers (the tests
# hold the two backends equal); a rule you write yourself runs its own NumPy on either backend.
#
# The gradient keeps the signal of *active* units whatever its sign. Deconvnet treats the backward
# signal as if it were a forward signal and applies the ReLU to it: only *positive* signals pass, active
# unit or not. Guided backpropagation demands both. Every rule object has a method
# `relu(signal, eta, eta_ref)`; here are the four combinations of signs:

# %%
eta = np.array([-1.0, -1.0, 2.0, 2.0])
s = np.array([-0.5, 0.5, -0.5, 0.5])
rules = {"gradient": saliency.Gradient(), "deconvnet": saliency.Deconvnet(), "guided": saliency.Guided()}
print(f"{'eta':>6} {'s':>6} | " + " ".join(f"{name:>9}" for name in rules))
outputs = {name: rule.relu(s, eta, None) for name, rule in rules.items()}
for row in range(len(eta)):
    print(f"{eta[row]:6.1f} {s[row]:6.1f} | " + " ".join(f"{outputs[n][row] + 0.0:9.1f}" for n in rules))

# %% [markdown]
# Max pooling keeps its switches under all three rules (the rule's `max_pool` method routes the
# signal to the window's winner by default), so deconvnet still sees the image through the
# switches, and only through them.
#
# ## 2. Same recursion, another rule
#
# `saliency.guided_backprop(net, x)` is one forward pass and one `net.backward(trace, signal,
# rule=saliency.Guided())`. Nothing else changes.

# %%
def load_photo(photo):
    """A uint8 RGB photo -> the (1, 3, 227, 227) network input and the resized photo."""
    resized = images.resize_image(photo, prep.input_size, prep.resize)
    return prep.apply(resized)[None], resized


x_cat, cat = load_photo(data.chelsea())
trace = net.forward(x_cat)
t_cat = int(trace.output.argmax())
signal = saliency.score_signal(trace.output, np.array([t_cat]))
by_hand = net.backward(trace, signal, rule=saliency.Guided())
print(f"class {t_cat} ({net.class_names[t_cat]}):",
      "net.backward(rule=Guided()) == saliency.guided_backprop:",
      np.array_equal(by_hand, saliency.guided_backprop(net, x_cat, target=t_cat)))

# %% [markdown]
# A rule of your own needs no layer code: subclass `saliency.Rule` (or one of its rules) and write
# `relu`. Here each rule is wrapped to record, at every ReLU it passes on the way down, the fraction
# of entries whose signal is *not* zero: how much of the signal survives.

# %%
def surviving_fraction(rule_class, x, target):
    """Fraction of nonzero signal entries at the input of every ReLU, from the top down."""
    fractions = []

    class Recording(rule_class):
        def relu(self, signal, eta, eta_ref):
            out = super().relu(signal, eta, eta_ref)
            fractions.append(np.count_nonzero(out) / out.size)
            return out

    trace = net.forward(x)
    net.backward(trace, saliency.score_signal(trace.output, np.array([target])), rule=Recording())
    return np.array(fractions)


survival = {name: surviving_fraction(type(rule), x_cat, t_cat) for name, rule in rules.items()}
fig, ax = plt.subplots(figsize=(8, 3.6), constrained_layout=True)
for name, fractions in survival.items():
    ax.plot(fractions, marker="o", label=name)
ax.set_xlabel("ReLU, counted from the top of SqueezeNet (0 = relu_conv_final) down to relu_conv1")
ax.set_ylabel("fraction of nonzero signal")
ax.set_title(f"How much signal each rule lets through (chelsea, class {t_cat}: {net.class_names[t_cat]})")
ax.set_ylim(-0.03, 1.03)
ax.legend()
plt.show()
dead = np.flatnonzero(survival["deconvnet"] == 0)
if len(dead):
    print(f"the deconvnet signal is zero everywhere from ReLU number {dead[0]} down (of {len(dead) + dead[0]})")

# %% [markdown]
# The gradient keeps about the fraction of units that are active. Guided backpropagation keeps
# fewer: of the active units, only those receiving a positive signal. Deconvnet keeps about half
# at first (the positive signals), but look at where its curve ends: on SqueezeNet the deconvnet
# signal often reaches a layer where **every** entry is negative (a squeeze layer reading many
# negative expand weights), and the ReLU rule `1[s > 0] * s` then kills it completely. Nothing in
# the forward pass can stop that, because the deconvnet rule does not look at it: only the max-pool
# switches depend on the image. This is a property of the rule, not a bug: when we tried 40 random
# classes on the chelsea and coffee photos, 72 of the 80 deconvnet maps were exactly zero.
#
# ## 3. The three maps side by side
#
# Each map is reduced over colour channels by `m[i, j] = max_c |a[c, i, j]|`
# (`postprocess.reduce_channels(a, "max_abs")`) and shown on its own colour scale.

# %%
photos = {"chelsea": data.chelsea(), "coffee": data.coffee()}
methods = {"gradient": saliency.gradient, "guided": saliency.guided_backprop,
           "deconvnet": saliency.deconvnet}
fig, axes = plt.subplots(len(photos), 1 + len(methods), figsize=(16, 4 * len(photos)),
                         constrained_layout=True)
for row, (photo_name, photo) in enumerate(photos.items()):
    x, resized = load_photo(photo)
    t = int(net(x).argmax())
    label = net.class_names[t].split(",")[0]
    axes[row, 0].imshow(resized)
    axes[row, 0].set_title(f"{photo_name}: top-1 {label} ({t})")
    for col, (method_name, method) in enumerate(methods.items(), start=1):
        heat = postprocess.reduce_channels(method(net, x, target=t), "max_abs")[0]
        image = axes[row, col].imshow(heat, cmap="inferno", vmin=0, vmax=heat.max() if heat.max() > 0 else 1)
        note = "" if heat.max() > 0 else "\n(identically zero)"
        axes[row, col].set_title(f"{method_name}, class {label}{note}")
        fig.colorbar(image, ax=axes[row, col], fraction=0.046, label="max_c |signal|")
for ax in axes.ravel():
    ax.axis("off")
plt.show()

# %% [markdown]
# Guided backpropagation gives the sharp, edge-like picture it is known for: the cat's eyes, nose
# and whiskers, the rim of the cup. The gradient is grainier. Sharper is not the same as more
# faithful, though, which is what the next two checks probe.
#
# ## 4. Sanity check 1: does the map depend on the class?
#
# Explain the cat photo once for its own class and once for `espresso` (967). A map that explains
# *the decision* should change; a map that mostly shows the image's edges will not. We compare the
# two maps with Spearman's rank correlation (1 = same ordering of pixels).

# %%
other = 967
for method_name in ("gradient", "guided"):
    method = methods[method_name]
    own = postprocess.reduce_channels(method(net, x_cat, target=t_cat), "max_abs")[0]
    espresso = postprocess.reduce_channels(method(net, x_cat, target=other), "max_abs")[0]
    rho = spearmanr(own.ravel(), espresso.ravel())[0]
    print(f"{method_name:9s}: rank correlation of the maps for '{net.class_names[t_cat]}' and "
          f"'{net.class_names[other]}' = {rho:.2f}")

# %% [markdown]
# ## 5. Sanity check 2: cascading weight randomization (Adebayo et al., 2018)
#
# If a map explains what the network *learned*, destroying what it learned should destroy the map.
# Starting at the top (`conv_final`), we replace the trained weights of one block after another by
# random ones (He-normal, `nets.random_parameters`), cumulatively, and compare each new map of the
# same photo and class with the trained network's map.

# %%
random_params = nets.random_parameters(nets.build("squeezenet1_0"), seed=0).parameters()
blocks = list(dict.fromkeys(name.split("/")[0] for name in net.parameters()))[::-1]
shown = ["conv_final", "fire9", "fire5", "conv1"] if FAST else blocks
print("blocks from the top:", blocks)

params = {name: dict(arrays) for name, arrays in net.parameters().items()}
trained_maps = {name: postprocess.reduce_channels(methods[name](net, x_cat, target=t_cat), "max_abs")[0]
                for name in ("gradient", "guided")}
correlations = {name: [] for name in trained_maps}
stage_maps = {name: [] for name in trained_maps}
for block in blocks:
    for name in params:
        if name.split("/")[0] == block:
            params[name] = random_params[name]
    if block not in shown:
        continue
    randomized = nets.build("squeezenet1_0").load_parameters(params)
    for name in trained_maps:
        heat = postprocess.reduce_channels(methods[name](randomized, x_cat, target=t_cat), "max_abs")[0]
        stage_maps[name].append(heat)
        correlations[name].append(spearmanr(trained_maps[name].ravel(), heat.ravel())[0])

fig, ax = plt.subplots(figsize=(8, 3.6), constrained_layout=True)
for name, values in correlations.items():
    ax.plot(shown, values, marker="o", label=name)
ax.set_ylim(0, 1)
ax.set_xlabel("randomized from the top down to (cumulative)")
ax.set_ylabel("rank correlation with trained map")
ax.set_title(f"Cascading randomization, chelsea, class {t_cat} ({net.class_names[t_cat].split(',')[0]})")
ax.legend()
plt.show()
for name, values in correlations.items():
    print(f"{name:9s}", " ".join(f"{block}: {v:.2f}" for block, v in zip(shown, values)))

# %%
columns = [0, 1, len(shown) - 1] if len(shown) > 2 else list(range(len(shown)))
fig, axes = plt.subplots(2, 1 + len(columns), figsize=(4 * (1 + len(columns)), 7.6), constrained_layout=True)
for row, name in enumerate(trained_maps):
    panels = [("trained", trained_maps[name])] + [(f"randomized down to {shown[c]}", stage_maps[name][c])
                                                  for c in columns]
    for ax, (title, heat) in zip(axes[row], panels):
        image = ax.imshow(heat, cmap="inferno")
        ax.set_title(f"{name}: {title}")
        ax.axis("off")
        fig.colorbar(image, ax=ax, fraction=0.046)
plt.show()

# %% [markdown]
# The gradient map changes as soon as the top layer is random: it depends on what the network
# learned. The guided backpropagation map stays strikingly similar to the trained one until the
# lowest layers are randomized too: much of what it shows is the photo's edges, reconstructed by
# the first layers and the switches, whatever the upper layers compute. That does not make it
# useless for *localization* (edges of the object are where the object is), but it is a warning
# against reading it as an explanation of the decision.
#
# ## Summary
#
# * Gradient, deconvnet and guided backpropagation are the same recursion with different ReLU
#   rules: `1[eta > 0] * s`, `1[s > 0] * s` and `1[eta > 0] * 1[s > 0] * s`.
# * A rule is a small object with `relu` (and `max_pool`); `net.backward(trace, signal, rule=...)`
#   runs any of them, including your own.
# * Guided backpropagation keeps the least signal and gives the sharpest maps; on SqueezeNet the
#   deconvnet signal usually dies out completely.
# * Sharpness is not faithfulness: the guided map barely depends on the class or on the upper
#   layers' weights, the gradient does.
#
# ## Exercises
#
# 1. Write a "leaky" rule, `s_in = s` where `eta > 0` and `0.1 * s` elsewhere, as a subclass of
#    `saliency.Rule`, and compare its map with the gradient's.
# 2. Find a class for which the deconvnet map of the coffee photo is *not* zero
#    (hint: loop over classes and test `np.abs(map).max() > 0`). At which ReLU does the signal die
#    for the others? Use `surviving_fraction`.
# 3. Repeat the randomization test with the *independent* randomization of one block at a time
#    (all others trained). Which layer does guided backpropagation depend on most?
# 4. Run the class-sensitivity check on the coffee photo with several pairs of classes.
# 5. **Coursework.** `tutorials/assignments/2_rules.py`: implement the guided, deconvnet and
#    DeepLIFT rescale rules and plug them into the recursion; check with `sensloc grade 2 FILE`.
