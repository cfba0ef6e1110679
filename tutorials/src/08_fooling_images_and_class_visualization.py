# %% [markdown]
# # 8. Fooling images and class visualization: walking along the sensitivity
#
# A sensitivity map (notebook 1) is the input gradient of a class score, $\partial f_t / \partial x$,
# shown as a picture: it says how much the score would change if one pixel changed a little. Read
# as a *direction* instead of a picture, the same array is the direction in which the score rises
# fastest. This notebook walks along it, as in the network-visualization assignment of Stanford's
# CS231n, on the pretrained SqueezeNet 1.0 of notebooks 1-3:
#
# * from a real photo, a few small steps make the network see another class (a **fooling
#   image**; Szegedy et al., 2014);
# * from a blank image, many steps with a few regularizers draw what the network associates with
#   a class (**class visualization**; Simonyan et al., 2014; Yosinski et al., 2015).
#
# **You will learn**
#
# 1. that `saliency.gradient(net, x, target)`, the array behind every sensitivity map, predicts
#    how a small step changes the class score (a first-order Taylor expansion), and how to check it;
# 2. how to make a fooling image by gradient ascent on a target class's score, and how small the
#    change is;
# 3. how to visualize a class by gradient ascent from a blank image with L2 regularization,
#    jitter and periodic blur, and what each regularizer is for;
# 4. what both say about reading sensitivity maps.
#
# **Set-up**: the pretrained SqueezeNet 1.0 weights (5 MB, downloaded once, or
# `sensloc weights fetch squeezenet1_0`) and scikit-image's photos. `SENSLOC_TUTORIAL_FAST=1`
# runs fewer ascent steps and one class instead of three.
#
# **Questions.** A few cells marked **Question** ask about what the notebook just computed; write
# your answer in the **Your answer** cell below each. Model answers for teachers are in
# `tutorials/answers/08_fooling_images_and_class_visualization.md`.


# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from skimage import data

from sensloc import nets
from sensloc import saliency
from sensloc import weights
from sensloc.data import images
from sensloc.saliency import postprocess

FAST = os.environ.get("SENSLOC_TUTORIAL_FAST", "0") not in ("", "0")
np.set_printoptions(precision=4, suppress=True)
print("fast mode" if FAST else "full mode")

net = weights.load("squeezenet1_0", download=True)  # fetches the 5 MB file once if missing
prep = net.preprocessing
photo = images.resize_image(data.chelsea(), prep.input_size, prep.resize)  # (227, 227, 3) uint8
x_cat = prep.apply(photo)[None]                                            # (1, 3, 227, 227)


def top1(x):
    """The class index the network predicts for the batch ``x`` of one image."""
    return int(net(x)[0].argmax())


def short(index):
    """A class's first name ("tabby, tabby cat" -> "tabby")."""
    return net.class_names[index].split(",")[0]


t_cat = top1(x_cat)
print(f"input {x_cat.shape}: BGR minus the mean {prep.mean}, one unit = one grey level of 255")
print(f"the photo is classified as {short(t_cat)} (class {t_cat})")

# %% [markdown]
# ## 1. The sensitivity as a direction
#
# `saliency.gradient` (in `saliency/methods.py`) returns $g = \partial f_t / \partial x$ for the
# logit $f_t$ of class $t$, shape `(N, 3, H, W)`: the recursion of Eq. 1 run down to the pixels.
# A sensitivity map is `m[i, j] = max_c |a[c, i, j]|` of this array. Near $x$ the score is
# close to linear,
#
# $$f_t(x + \varepsilon u) \approx f_t(x) + \varepsilon\, g \cdot u ,$$
#
# and among all directions $u$ of length 1 the dot product $g \cdot u$ is largest for
# $u = g / \|g\|$, where it equals $\|g\|$. So a step of length $\varepsilon$ along the
# normalized gradient should raise the score by about $\varepsilon \|g\|$. We check this for a
# class the photo is *not*, goldfish, with a step of length 10 (in a space of
# $3 \cdot 227 \cdot 227 = 154{,}587$ numbers, a root mean square change of 0.025 grey levels).

# %%
t_fish = 1                                                    # "goldfish, Carassius auratus"
g = saliency.gradient(net, x_cat, target=t_fish)              # (1, 3, 227, 227): d f_t / d x
step = 10.0
predicted_rise = step * np.linalg.norm(g)
actual_rise = net(x_cat + step * g / np.linalg.norm(g))[0, t_fish] - net(x_cat)[0, t_fish]
random_direction = np.random.default_rng(0).normal(size=g.shape).astype(np.float32)
random_rise = (net(x_cat + step * random_direction / np.linalg.norm(random_direction))[0, t_fish]
               - net(x_cat)[0, t_fish])
print(f"{short(t_fish)} logit {net(x_cat)[0, t_fish]:.3f}; a step of length {step:g}:")
print(f"  along the gradient: predicted rise {predicted_rise:.4f}, actual rise {actual_rise:.4f}")
print(f"  along a random direction: actual rise {random_rise:.4f}")
assert abs(actual_rise - predicted_rise) < 0.1 * predicted_rise
assert actual_rise > 10 * abs(random_rise)

# %% [markdown]
# The gradient direction raises the score by what the expansion predicts (within 10 %, since the
# network is linear only piece by piece), and far more than a random direction of the same
# length. This is what a sensitivity map measures, pixel by pixel; the rest of the notebook only
# takes such steps again and again.
#
# ## 2. Fooling images
#
# To make the network see class $t$ in the photo, repeat the step until it does:
#
#     x <- x + step * g / ||g||,    g = d f_t / d x
#
# (CS231n's recipe; the step has a fixed length, so its size does not depend on how large the
# gradient happens to be). We stop as soon as the top-1 class is $t$.

# %%
def fool(x, target, step=100.0, max_steps=100):
    """Gradient ascent on ``target``'s logit until the network predicts it.

    Returns the fooled batch (1, 3, H, W) and the number of steps taken.
    """
    x = x.copy()
    for taken in range(max_steps):
        if top1(x) == target:
            return x, taken
        g = saliency.gradient(net, x, target=target)
        x += step * g / np.linalg.norm(g)
    return x, max_steps


t_fool = 76                                                   # "tarantula"
x_fool, taken = fool(x_cat, t_fool)
change = x_fool - x_cat                                       # (1, 3, 227, 227), grey levels
p_before = nets.softmax(net(x_cat).astype(np.float64))[0]
p_after = nets.softmax(net(x_fool).astype(np.float64))[0]
print(f"{taken} steps: top-1 {short(top1(x_fool))}, p({short(t_fool)}) {p_before[t_fool]:.4f} -> "
      f"{p_after[t_fool]:.3f}, p({short(t_cat)}) {p_before[t_cat]:.3f} -> {p_after[t_cat]:.3f}")
print(f"change: largest {np.abs(change).max():.2f} grey levels, root mean square "
      f"{np.sqrt(np.mean(change ** 2)):.2f} (the photo spans 0..255)")
# Saved as an ordinary 8-bit image, every value is rounded: does the fooling survive?
x_saved = prep.apply(prep.invert(x_fool[0]))[None]
print(f"rounded to 8-bit pixels: top-1 {short(top1(x_saved))}")
assert top1(x_fool) == t_fool and taken < 100
assert np.abs(change).max() < 20

fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), constrained_layout=True)
axes[0].imshow(photo)
axes[0].set_title(f"original: {short(t_cat)}")
axes[1].imshow(prep.invert(x_fool[0]))
axes[1].set_title(f"fooled: {short(top1(x_fool))}")
limit = float(np.abs(change).max())
rgb_change = change[0].transpose(1, 2, 0)[:, :, ::-1 if prep.channel_order == "BGR" else 1]
axes[2].imshow(np.clip(0.5 + 0.5 * rgb_change / limit, 0, 1))   # the largest change -> 0 or 1
axes[2].set_title(f"difference, magnified {127.5 / limit:.0f} times\n(grey: no change)")
heat = postprocess.reduce_channels(saliency.gradient(net, x_cat, target=t_fool), "max_abs")[0]
where_changed = postprocess.reduce_channels(change, "max_abs")[0]  # (227, 227)
print("correlation between the change's max_c |.| and the original photo's tarantula map: "
      f"{np.corrcoef(where_changed.ravel(), heat.ravel())[0, 1]:.2f}")
shown = axes[3].imshow(heat, cmap="inferno")
axes[3].set_title(f"sensitivity map of {short(t_fool)}\non the original photo")
fig.colorbar(shown, ax=axes[3], fraction=0.046, label="|d logit / d pixel|")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# The change is invisible: the fooled photo and the original look the same, and the difference
# has to be magnified many times to be seen. It is a fine texture, strongest where the
# tarantula's sensitivity map of the original photo is bright (the printed correlation): the
# first step *is* that gradient, and the later ones stay close to it.

# %% [markdown]
# **Question 8.1.** The sensitivity map of "tarantula" on a photo of a cat is as bright and as
# structured as the map of the class the photo shows. What does the fooling image tell you about
# how far a sensitivity map can be read as "where the evidence for the class is"?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## 3. Class visualization
#
# Now start from a blank image (zero in preprocessed space: the mean colour, plus a little noise)
# and climb the score of class $t$ for many steps. Unconstrained, the ascent makes high-frequency
# patterns of huge contrast that no photo contains. Three regularizers keep it closer to images:
#
# * **L2 regularization**: maximize $f_t(x) - \lambda \|x\|^2$, whose gradient is
#   $g - 2 \lambda x$: every step also pulls the image back towards the mean colour;
# * **jitter**: shift the image by a few random pixels before each step (and back after), so
#   that no pattern that works at only one exact position is rewarded;
# * **periodic blur**: every few steps smooth the image with a small Gaussian
#   (`postprocess.gaussian_smooth`, each colour channel separately), which removes what the
#   gradient adds at the finest scale.
#
# The step is `x <- x + lr * (g - 2 lambda x)`, then the pixels are clipped to 0..255. Since the
# gradient of a class score is a few thousandths of a logit per grey level, the learning rate
# is large.

# %%
def visualize_class(target, steps, lr=3e4, l2=2e-7, jitter=8, blur_every=10, blur_sigma=0.5,
                    seed=0):
    """Gradient ascent on ``target``'s logit from a near-blank image.

    Returns the image (1, 3, H, W) and the target's logit after every step.
    """
    rng = np.random.default_rng(seed)
    low = -np.array(prep.mean, np.float32)[:, None, None]     # pixel 0 in preprocessed space
    x = rng.normal(0, 1, x_cat.shape).astype(np.float32)
    logits = []
    for step in range(steps):
        dy, dx = rng.integers(-jitter, jitter + 1, size=2)
        x = np.roll(x, (dy, dx), axis=(2, 3))
        g = saliency.gradient(net, x, target=target)
        x = x + lr * (g - 2 * l2 * x)
        x = np.roll(x, (-dy, -dx), axis=(2, 3))
        x[0] = np.clip(x[0], low, low + 255)
        if (step + 1) % blur_every == 0:
            x[0] = postprocess.gaussian_smooth(x[0], blur_sigma)  # (3, H, W): each channel
        logits.append(float(net(x)[0, target]))
    return x, logits


classes = [76] if FAST else [76, 130, 779]                    # tarantula, flamingo, school bus
steps = 40 if FAST else 150
fig, axes = plt.subplots(2, len(classes), figsize=(5 * len(classes), 8.5), squeeze=False,
                         constrained_layout=True)
for column, target in enumerate(classes):
    start = float(net(np.zeros_like(x_cat))[0, target])
    x_class, logits = visualize_class(target, steps)
    p = nets.softmax(net(x_class).astype(np.float64))[0]
    print(f"{short(target)}: logit {start:.2f} (blank image) -> {logits[-1]:.2f} after {steps} "
          f"steps (the cat photo's: {net(x_cat)[0, target]:.2f}); top-1 {short(top1(x_class))}, "
          f"p = {p[target]:.3f}")
    assert logits[-1] > start + 10 and top1(x_class) == target
    axes[0, column].imshow(prep.invert(x_class[0]))
    axes[0, column].set_title(f"{short(target)} (class {target})")
    axes[0, column].axis("off")
    axes[1, column].plot(logits)
    axes[1, column].set(xlabel="step", ylabel=f"logit of {short(target)}")
plt.show()
print(f"the cat photo's own top logit, for comparison: {net(x_cat)[0].max():.2f}")

# %% [markdown]
# The logit climbs far above the cat photo's top logit and the network is certain of the class.
# The curve is not monotone: it dips after every blur (each tenth step), which removes fine detail
# the score relied on, and it shakes with the random shifts of jitter, since the score is measured
# after the image is shifted back. Parts of the class
# (for the tarantula, hairy legs around a body) appear repeated across the image, since nothing
# asks for *one* object, and jitter rewards a part that works at any position.

# %% [markdown]
# **Question 8.2.** Run `visualize_class(76, steps)` with `l2=0`, with `jitter=0` and with
# `blur_every=10 ** 9` (one at a time). Which regularizer changes the image most, and does any
# of them change whether the network reaches the class? What does that say about the images that
# maximize a score without regularization?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## Summary
#
# * `saliency.gradient(net, x, target)` is $\partial f_t / \partial x$: shown as a picture it is
#   a sensitivity map, used as a direction it is the steepest ascent of the class score, and a
#   short step along it raises the score by $\varepsilon \|g\|$ as the first-order expansion
#   predicts.
# * A few normalized gradient steps from a photo of a cat make SqueezeNet see a tarantula; the
#   largest change is about 10 grey levels (of 255) and invisible. High sensitivity to a class
#   therefore does not mean evidence for it in the image.
# * Gradient ascent from a blank image with L2 regularization, jitter and blur draws patterns the
#   network scores as the class far above the logits of the cat photo.
#
# ## Exercises
#
# 1. Fool the network with a smaller step (`fool(x_cat, t_fool, step=20)`): how do the number
#    of steps and the largest change move?
# 2. Replace the L2-normalized step by the sign of the gradient, `x += eps * np.sign(g)` (the
#    fast gradient sign method of Goodfellow et al., 2015). For the same largest change per pixel,
#    which needs fewer steps?
# 3. Fool the network into each of 10 random classes and count how many survive rounding to 8-bit
#    pixels. Why might rounding undo a fooling image?
# 4. Visualize a class with `saliency.guided_backprop` instead of `saliency.gradient` in the
#    ascent. Does the score still rise? Why is this no longer gradient ascent?
