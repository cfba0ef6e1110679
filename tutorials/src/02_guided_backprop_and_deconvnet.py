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
# `SENSLOC_TUTORIAL_FAST=1` evaluates fewer randomization stages and fewer classes.
#
# **Questions.** Cells marked **Question** ask about what the notebook just computed; write your
# answer in the **Your answer** cell below each. Model answers for teachers are in
# `tutorials/answers/02_guided_backprop_and_deconvnet.md`.

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
# In `saliency/rules.py` each rule's `relu` method is that equation as one NumPy expression:
# `saliency.rules.Gradient.relu` returns `(eta > 0) * signal`, `Deconvnet.relu` returns
# `(signal > 0) * signal` and `Guided.relu` returns `(eta > 0) * (signal > 0) * signal`. That is
# the code that runs here (the default "numpy" backend, `nets.current_backend()`). After
# `nets.use_backend("numba")` the same rules run as fused one-pass Numba kernels instead, with the
# same numbers (the tests hold the two backends equal); a rule you write yourself runs its own
# NumPy on either backend.
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
# Max pooling keeps its switches under all three rules (`saliency.rules.Rule.max_pool` routes the
# signal to each window's winner, `nets.reference.max_pool_route` on the NumPy backend), so
# deconvnet still sees the image through the switches, and only through them.
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
same = np.array_equal(by_hand, saliency.guided_backprop(net, x_cat, target=t_cat))
print(f"class {t_cat} ({net.class_names[t_cat]}):",
      "net.backward(rule=Guided()) == saliency.guided_backprop:", same,
      f"| nonzero entries: {np.count_nonzero(by_hand)} of {by_hand.size}")
assert same and np.count_nonzero(by_hand) > by_hand.size // 10

# %% [markdown]
# A rule of your own needs no layer code: subclass `saliency.Rule` (or one of its rules) and write
# `relu`. Here each rule is wrapped to record, at every ReLU it passes on the way down, the fraction
# of entries whose signal is *not* zero (how much of the signal survives), the fraction of the
# ReLU's units that are active in the forward pass, `eta > 0`, and the fraction of entries whose
# *arriving* signal `s` is not zero.

# %%
def surviving_fraction(rule_class, x, target):
    """Fractions of nonzero outgoing signal, of active units (eta > 0) and of nonzero arriving
    signal at every ReLU, from the top down: three (number of ReLUs,) arrays."""
    fractions, active, arriving = [], [], []

    class Recording(rule_class):
        def relu(self, signal, eta, eta_ref):
            out = super().relu(signal, eta, eta_ref)
            fractions.append(np.count_nonzero(out) / out.size)
            active.append(np.count_nonzero(eta > 0) / eta.size)
            arriving.append(np.count_nonzero(signal) / signal.size)
            return out

    trace = net.forward(x)
    net.backward(trace, saliency.score_signal(trace.output, np.array([target])), rule=Recording())
    return np.array(fractions), np.array(active), np.array(arriving)


recorded = {name: surviving_fraction(type(rule), x_cat, t_cat) for name, rule in rules.items()}
survival = {name: fractions for name, (fractions, _, _) in recorded.items()}
active = recorded["gradient"][1]              # the forward pass is the same for every rule
arriving = recorded["gradient"][2]            # what reaches each ReLU under the gradient rule
fig, ax = plt.subplots(figsize=(8, 3.6), constrained_layout=True)
ax.plot(active, color="gray", ls=":", lw=2, label="active units, eta > 0")
for name, fractions in survival.items():
    ax.plot(fractions, marker="o", label=name)
ax.set_xlabel("ReLU, counted from the top of SqueezeNet (0 = relu_conv_final) down to relu_conv1")
ax.set_ylabel("fraction of entries")
ax.set_title(f"How much signal each rule lets through (chelsea, class {t_cat}: {net.class_names[t_cat]})")
ax.set_ylim(-0.03, 1.03)
ax.legend(fontsize=8)
plt.show()

print("ReLU number      ", " ".join(f"{i:5d}" for i in range(len(active))))
print("active units     ", " ".join(f"{v:5.2f}" for v in active))
print("s != 0 (gradient)", " ".join(f"{v:5.2f}" for v in arriving))
for name, fractions in survival.items():
    print(f"{name:17s}", " ".join(f"{v:5.2f}" for v in fractions))
dead = np.flatnonzero(survival["deconvnet"] == 0)
alive = survival["deconvnet"][:dead[0]] if len(dead) else survival["deconvnet"]
print(f"deconvnet: nonzero fraction between {alive[1:].min():.2f} and {alive[1:].max():.2f} "
      f"at ReLUs 1-{len(alive) - 1}",
      f"then zero everywhere from ReLU number {dead[0]} down (of {len(active)})" if len(dead) else "")
# The gradient rule passes s exactly where eta > 0, so its count is that of [eta > 0 and s != 0].
assert np.all(survival["gradient"] <= np.minimum(active, arriving) + 1e-12)
assert np.all(survival["guided"] <= survival["gradient"] + 1e-12)
assert np.any(survival["deconvnet"] > survival["gradient"])    # Question 1 below asks why

# %% [markdown]
# Read the printed table. At ReLU 0 (`relu_conv_final`) every rule keeps almost nothing: the
# signal there is the one-hot $e_t$ (spread by the global average pool), nonzero in one of the 1000
# class channels. Below it, the gradient keeps the active units, `1[eta > 0]`, among those that
# receive a nonzero signal: its row is never above the "active" row or the "s != 0" row (the
# `assert` checks it), and it equals the active row wherever nearly every unit receives a signal.
# Where it falls far below, the arriving signal is itself mostly exactly zero: just below a max
# pool (only window winners receive a signal) and just below `conv_final`, whose row for the cat
# class is mostly zeros (these Deep Compression weights are pruned). Guided backpropagation keeps a
# subset of the gradient's entries: the active units that also receive a positive signal.
# Deconvnet keeps only the positive signals, whatever the forward pass did; on this photo that is
# between the two printed fractions at first (far from "half"), and then its row drops to zero:
# the deconvnet signal reaches a layer where **no** entry is positive, and the ReLU rule
# `1[s > 0] * s` kills it completely. Nothing in the forward pass can stop that, because the
# deconvnet rule does not look at it: only the max-pool switches depend on the image.
#
# Is this a rare accident? The next cell explains a few randomly chosen classes on two photos with
# deconvnet and counts the maps that are exactly zero.

# %%
count_rng = np.random.default_rng(0)
per_photo = 3 if FAST else 20
zero_maps, tried = 0, 0
for photo in (data.chelsea(), data.coffee()):
    x, _ = load_photo(photo)
    classes = count_rng.choice(1000, size=per_photo, replace=False)
    maps = saliency.deconvnet(net, np.repeat(x, per_photo, axis=0), target=classes)   # one pass for all
    zero_maps += sum(int(np.abs(m).max() == 0) for m in maps)
    tried += per_photo
print(f"deconvnet maps that are exactly zero: {zero_maps} of {tried} (random classes, chelsea and coffee)")
assert zero_maps > tried / 2       # "most", as the summary says

# %% [markdown]
# **Question 2.1.** In the printed table, the guided fraction at a ReLU is never larger than the
# gradient fraction, but the deconvnet fraction can be larger than both (look at ReLUs 1-8). How
# can deconvnet pass a signal through a unit that was *off* in the forward pass, and what does that
# say about what a deconvnet map depends on?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## 3. The three maps side by side
#
# Each map is reduced over colour channels by `m[i, j] = max_c |a[c, i, j]|`
# (`postprocess.reduce_channels(a, "max_abs")`) and shown on its own colour scale, clipped at the
# map's 99th percentile (a few extreme pixels would otherwise paint the rest black).

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
        clip = np.percentile(heat, 99)
        image = axes[row, col].imshow(heat, cmap="inferno", vmin=0, vmax=clip if clip > 0 else 1)
        note = "clipped at 99th percentile" if heat.max() > 0 else "identically zero"
        axes[row, col].set_title(f"{method_name}, class {label}\n({note})")
        fig.colorbar(image, ax=axes[row, col], fraction=0.046, label="max_c |signal|", extend="max")
for ax in axes.ravel():
    ax.axis("off")
plt.show()

# %% [markdown]
# Guided backpropagation gives the sharp, edge-like picture it is known for: the cat's eyes and
# nose (the whiskers faintly), the rims of the cup and saucer, the handle, the spoon. The gradient
# is grainier; on the coffee photo its brightest patch is the coffee's surface. Both deconvnet maps
# are identically zero, as the count above led us to expect. Sharper is not the same as more
# faithful, though, which is what the next two checks probe.
#
# ## 4. Sanity check 1: does the map depend on the class?
#
# Explain the cat photo once for its own class and once for `espresso` (967). A map that explains
# *the decision* should change; a map that mostly shows the image's edges will not. We compare the
# two maps with Spearman's rank correlation (1 = same ordering of pixels).

# %%
other = 967
class_rho = {}
for method_name in ("gradient", "guided"):
    method = methods[method_name]
    own = postprocess.reduce_channels(method(net, x_cat, target=t_cat), "max_abs")[0]
    espresso = postprocess.reduce_channels(method(net, x_cat, target=other), "max_abs")[0]
    rho = spearmanr(own.ravel(), espresso.ravel())[0]
    class_rho[method_name] = rho
    print(f"{method_name:9s}: rank correlation of the maps for '{net.class_names[t_cat]}' and "
          f"'{net.class_names[other]}' = {rho:.2f}")
assert class_rho["guided"] > class_rho["gradient"] + 0.2    # the prose below says so

# %% [markdown]
# Asked about a different class, the gradient's map of the same photo changes much more than the
# guided map (compare the two printed correlations): much of the guided map is the same whatever
# class is explained.

# %% [markdown]
# **Question 2.2.** The espresso class has nothing to do with this photo, yet the guided map for it
# correlates strongly with the map for the cat. Where in the recursion does the class enter, and
# what must happen to the signal on its way down for the class to be forgotten?

# %% [markdown]
# **Your answer:** *(write it here)*

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
# What the prose below says: at every stage the guided map stays closer to its trained map than the
# gradient map does, and the guided map loses most of its similarity only when conv1 goes too.
assert all(g > d for g, d in zip(correlations["guided"], correlations["gradient"]))
assert correlations["guided"][shown.index("fire5")] - correlations["guided"][-1] > 0.2

# %%
columns = [0, 1, len(shown) - 1] if len(shown) > 2 else list(range(len(shown)))
fig, axes = plt.subplots(2, 1 + len(columns), figsize=(4 * (1 + len(columns)), 7.6), constrained_layout=True)
for row, name in enumerate(trained_maps):
    panels = [("trained", trained_maps[name])] + [(f"randomized down to {shown[c]}", stage_maps[name][c])
                                                  for c in columns]
    for ax, (title, heat) in zip(axes[row], panels):
        image = ax.imshow(heat, cmap="inferno", vmin=0, vmax=np.percentile(heat, 99))
        ax.set_title(f"{name}: {title}", fontsize=10)
        ax.axis("off")
        fig.colorbar(image, ax=ax, fraction=0.046, label="max_c |signal|", extend="max")
fig.suptitle("Each map on its own colour scale, clipped at its 99th percentile")
plt.show()

# %% [markdown]
# The gradient map's correlation with its trained map drops as soon as the top layer is random
# (the first printed value): it depends on what the network learned. The guided backpropagation
# map stays close to the trained one through the upper blocks (its eyes and nose are still there
# in the third panel) and loses most of its similarity only when `conv1` is randomized too: much of
# what it shows is the photo's edges, reconstructed by the first layers and the switches, whatever
# the upper layers compute. That does not make it useless for *localization* (edges of the object
# are where the object is), but it is a warning against reading it as an explanation of the
# decision.

# %% [markdown]
# **Question 2.3.** Spearman's correlation of two maps compares the *ranks* of their pixels. The maps
# above had to be clipped at their 99th percentile to be readable. Why is a rank correlation a
# fairer comparison of such maps than the plain (Pearson) correlation of their values?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## Summary
#
# * Gradient, deconvnet and guided backpropagation are the same recursion with different ReLU
#   rules: `1[eta > 0] * s`, `1[s > 0] * s` and `1[eta > 0] * 1[s > 0] * s`.
# * A rule is a small object with `relu` (and `max_pool`); `net.backward(trace, signal, rule=...)`
#   runs any of them, including your own.
# * Guided backpropagation keeps a subset of what the gradient keeps and gives the sharpest maps;
#   on SqueezeNet the deconvnet signal of the chelsea photo dies out completely (and so did most of
#   the maps counted above).
# * Sharpness is not faithfulness: the guided map depends much less than the gradient on the class
#   and on the upper layers' weights.
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
# 5. **Coursework.** `coursework/assignments/2_rules.py`: implement the guided, deconvnet and
#    DeepLIFT rescale rules and plug them into the recursion; check with `sensloc grade 2 FILE`.
