# %% [markdown]
# # 7. Training a network with the same backward pass
#
# Notebooks 1-3 sent a class score back to the *pixels*. Training sends a loss back to the
# *weights*, through exactly the same recursion: the signal arriving at a layer's output is all a
# layer needs to say how its weights should change. This notebook trains networks on scenes whose
# true boxes are known by construction, then localizes objects with the network sensloc ships.
#
# **You will learn**
#
# 1. what the generated scenes are and why their class can only be told by shape;
# 2. the gradient of softmax cross-entropy at the logits, and the weight gradients of a
#    convolution and a fully connected layer, checked against finite differences;
# 3. a training loop (forward, loss, backward to the weights, Adam) written with the library;
# 4. how the packaged `vgg_small` was trained, and how well its maps find the objects.
#
# **Set-up**: nothing to download. The scenes are generated and `vgg_small` ships inside the
# package. `SENSLOC_TUTORIAL_FAST=1` trains for fewer steps and measures on fewer scenes.
#
# **Questions.** A few cells marked **Question** ask about what the notebook just computed; write
# your answer in the **Your answer** cell below each. Model answers for teachers are in
# `tutorials/answers/07_training_on_scenes.md`.


# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from sensloc import nets
from sensloc.data import scenes
from sensloc import weights
from sensloc.training import vgg_small as demo
from sensloc.localize.boxes import iou
from sensloc.nets.training import Adam, softmax_cross_entropy, train_step

FAST = os.environ.get("SENSLOC_TUTORIAL_FAST", "0") not in ("", "0")
np.set_printoptions(precision=4, suppress=True)
print("fast mode" if FAST else "full mode", "| classes:", scenes.CLASS_NAMES)

# %% [markdown]
# ## 1. Scenes with known boxes
#
# Each scene holds one object of one of ten shape classes with a random colour, texture, size,
# rotation and position, sometimes partly hidden, over a cluttered background whose colours come
# from the same distribution as the object's. Colour, texture and box size are drawn independently
# of the class, so a network can only succeed by looking at the *shape*. Scene `k` of stream
# `seed` depends on nothing else, so every scene can be regenerated exactly.

# %%
batch = scenes.generate(8, seed=0)
fig, axes = plt.subplots(1, 8, figsize=(16, 2.4))
for ax, image, label, box in zip(axes, batch.images, batch.labels, batch.boxes):
    ax.imshow(image)
    ax.add_patch(Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1],
                           fill=False, color="lime", lw=2))
    ax.set_title(scenes.CLASS_NAMES[label], fontsize=9)
    ax.axis("off")
plt.show()
print("images", batch.images.shape, batch.images.dtype, "| boxes", batch.boxes.shape)

# %% [markdown]
# ## 2. From the loss to the weights
#
# The network's last layer gives logits $z$; softmax turns them into probabilities
# $p_k = e^{z_k} / \sum_j e^{z_j}$ and the loss of a batch of $N$ scenes with true classes $y_n$
# is the mean cross-entropy $L = -\frac1N \sum_n \log p_{n, y_n}$. Its gradient at the logits is
# the signal that starts the backward pass:
#
#     dL/dz[n, k] = (p[n, k] - 1[k == y_n]) / N
#
# From there the recursion of notebook 1 runs unchanged, $s_i = g'(\eta_i) \sum_k w_{ki} s_k$.
# What is new is a second use of the signal at each layer's output. A weight $w_{ki}$ multiplies
# input $i$ on its way to output $k$, so its gradient is that input times that output's signal,
# summed over the batch. For a fully connected layer, `dW = dy^T x`; for a convolution every
# weight meets every input it read:
#
#     dw[o, c] = sum_n dy[n, o] (*) x[n, c]
#
# (`(*)` is the same cross-correlation as the forward pass). Let us check both against centred
# finite differences on a small float64 network.

# %%
tiny = nets.random_parameters(nets.vgg("tiny", [4, "M", 6, "M"], num_classes=3, input_size=8,
                                       hidden=5), seed=1).astype(np.float64)
rng = np.random.default_rng(0)
x, labels = rng.normal(size=(4, 3, 8, 8)), np.array([0, 2, 1, 2])

trace = tiny.forward(x)
loss, signal = softmax_cross_entropy(trace.output, labels)
grads = tiny.backward_parameters(trace, signal)


def loss_at(name, key, index, value):
    array = tiny.parameters()[name][key]
    saved = array[index]
    array[index] = value
    result = softmax_cross_entropy(tiny(x), labels)[0]
    array[index] = saved
    return result


h = 1e-6
for name, key in [("conv1_1", "weight"), ("conv2_1", "bias"), ("fc6", "weight"), ("fc8", "bias")]:
    # The entry with the largest gradient: an entry whose gradient is exactly 0 would compare
    # 0 with 0, a check that cannot fail (see below for why many are 0).
    index = np.unravel_index(np.argmax(np.abs(grads[name][key])), grads[name][key].shape)
    w = tiny.parameters()[name][key][index]
    numeric = (loss_at(name, key, index, w + h) - loss_at(name, key, index, w - h)) / (2 * h)
    backward = grads[name][key][index]
    relative = abs(backward - numeric) / abs(numeric)
    print(f"{name}/{key}{tuple(int(i) for i in index)}: backward {backward: .8f}   "
          f"finite difference {numeric: .8f}   relative error {relative:.1e}")
    assert abs(numeric) > 1e-3 and relative < 1e-6, (name, key, backward, numeric)

# %% [markdown]
# Many entries of a weight gradient are *exactly* zero, and `dW = dy^T x` says why: entry
# `dW[k, i]` is `sum_n dy[n, k] x[n, i]`, zero whenever output `k` received no signal from any
# scene of the batch (its ReLU was off for all of them: a *dead* unit for this batch) or input
# `i` was zero for all of them (it comes from a ReLU that was off).

# %%
g6 = grads["fc6"]["weight"]                                     # (5 outputs, 24 inputs)
eta6, x6 = trace.outputs["fc6"], trace.outputs["flatten"]       # (4, 5) and (4, 24)
dead_units = np.flatnonzero((eta6 <= 0).all(axis=0))
silent_inputs = np.flatnonzero((x6 == 0).all(axis=0))
print(f"fc6/weight: {np.sum(g6 == 0)} of {g6.size} entries of the gradient are exactly 0")
print(f"  units whose ReLU is off for all 4 inputs: {dead_units.tolist()} "
      f"(rows of zeros: {np.flatnonzero((g6 == 0).all(axis=1)).tolist()})")
print(f"  inputs that are 0 for all 4: {silent_inputs.tolist()} "
      f"(columns of zeros: {np.flatnonzero((g6 == 0).all(axis=0)).tolist()})")

# %% [markdown]
# **Question 7.1.** `fc6` has five units and the gradient of its weights has whole rows of zeros.
# Would more scenes in the batch make those rows nonzero? Would training ever change a weight of
# a unit whose ReLU is off for *every* possible input?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# ## 3. A training loop
#
# `train_step` is the whole loop body: forward, loss, `backward_parameters`, an optimizer step.
# Adam keeps running means of each gradient and of its square and moves every weight by
# their ratio; `weight_decay` adds `weight_decay * w` to every weight's gradient. Here a small
# network learns from fresh scenes at every step (there is no fixed training set to overfit).
# `train_step` also returns how many scenes of the batch were classified right *before* the
# update: since every batch is new, that is an accuracy on scenes the network has never seen.

# %%
def train_student(last_layer_scale, steps, batch_size=32):
    """Train a small VGG on fresh scenes; return its per-step losses and accuracies.

    ``last_layer_scale`` multiplies the He-normal initial weights of the last layer (fc8).
    """
    student = nets.random_parameters(nets.vgg("student", [8, "M", 16, "M", 32, "M", 32, "M"],
                                              num_classes=10, input_size=64, hidden=64), seed=0)
    student.parameters()["fc8"]["weight"] *= last_layer_scale
    optimizer = Adam(student.parameters(), lr=2e-3, weight_decay=5e-4)
    losses, accuracies = [], []
    for step in range(steps):
        batch = scenes.generate(batch_size, seed=1, start=batch_size * step)
        loss, correct = train_step(student, demo.scene_inputs(batch.images), batch.labels,
                                   optimizer)
        losses.append(loss)
        accuracies.append(correct / batch_size)
    return np.array(losses), np.array(accuracies)


def running_mean(values, window=20):
    """Mean of the last ``window`` values at every step (fewer at the start)."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (cumulative[1:] - cumulative[starts]) / (np.arange(1, len(values) + 1) - starts)


steps, batch_size = (40 if FAST else 300), 32
# Chance is 0.1; 20 batches of 32 give a mean with standard error sqrt(0.1 * 0.9 / 640).
above_chance = 0.1 + 2 * np.sqrt(0.1 * 0.9 / (20 * batch_size))
runs = {scale: train_student(scale, steps, batch_size) for scale in (1.0, 0.1)}

fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), constrained_layout=True)
for (scale, (losses, accuracies)), color in zip(runs.items(), ("C0", "C1")):
    label = f"fc8 initial weights x {scale:g}"
    axes[0].plot(losses, color=color, lw=0.6, alpha=0.4)
    axes[0].plot(running_mean(losses), color=color, label=f"{label} (mean of 20 steps)")
    axes[1].plot(accuracies, color=color, lw=0.6, alpha=0.4)
    axes[1].plot(running_mean(accuracies), color=color, label=f"{label} (mean of 20 steps)")
axes[0].axhline(np.log(10), color="0.4", ls="--", label="chance: log 10")
axes[0].set(xlabel="step", ylabel="cross-entropy")
axes[1].axhline(0.1, color="0.4", ls="--", label="chance: 1/10")
axes[1].axhline(above_chance, color="0.4", ls=":", label="chance + 2 standard errors")
axes[1].set(xlabel="step", ylabel="accuracy before the update (32 new scenes)", ylim=(0, 0.5))
for ax in axes:
    ax.legend(fontsize=8)
plt.show()
for scale, (losses, accuracies) in runs.items():
    above = np.flatnonzero(running_mean(accuracies)[19:] > above_chance)
    print(f"fc8 x {scale:g}: loss steps 0-19 {losses[:20].mean():.3f}, last 20 {losses[-20:].mean():.3f}; "
          f"accuracy last 20 {accuracies[-20:].mean():.3f}; mean of 20 batches first above "
          f"{above_chance:.3f} at step {above[0] + 19 if len(above) else 'never'}")
print(f"chance: loss log 10 = {np.log(10):.3f}; accuracy 0.100, one batch's standard deviation "
      f"sqrt(0.1 * 0.9 / {batch_size}) = {np.sqrt(0.09 / batch_size):.3f}")

# %% [markdown]
# With the usual initialization (blue) the loss starts *above* $\log 10$: the logits of the random
# last layer already differ, so some scenes get a low probability for their true class, and the
# first Adam steps, which move every weight by about the learning rate whatever the size of its
# gradient, make this worse before the loss settles at $\log 10$. Drawing the last layer's initial
# weights ten times smaller (orange) gives nearly equal logits, so the loss starts at chance,
# without the spike. After that both curves stay close to $\log 10$ for a long time: a network
# that has no feature yet that tells the shapes apart does best by giving every class the same
# probability. The accuracy curve, read against its own noise (the dotted line), shows when each
# run leaves chance (the printed step). In the full run (300 steps; the 40 of fast mode are too
# few) both accuracies cross the dotted line within the first 50 steps, while the loss is still
# within a few hundredths of $\log 10$; the run with the smaller last layer then moves away from
# chance faster and ends with the lower loss and the higher accuracy over its last 20 steps.

# %% [markdown]
# **Question 7.2.** Why is $\log 10 \approx 2.303$ the loss of a network that has learned nothing,
# and why can the loss sit at $\log 10$ while the batch accuracy is already above 0.1? Use the
# printed standard deviation: from which running accuracy on would you call the network better
# than chance?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# A few hundred steps only begin the job. The packaged `vgg_small` saw 448,000 scenes
# (7000 steps of 64) with a warm-up and a cosine decay of the learning rate; its file records the
# recipe and the command that reproduces it.

# %%
small = weights.load("vgg_small")
record = small.source["training"]
print(small)
print("command:", record["command"])
print("recipe:", record["recipe"])
print(f"trained for {record['train_seconds'] / 60:.1f} min; held-out accuracy "
      f"{record['held_out']['accuracy']:.3f} on {record['held_out']['count']} scenes")

count = 200 if FAST else 1000
held_out = scenes.generate(count, seed=3, start=demo.HELD_OUT_START)
print(f"accuracy on {count} other held-out scenes: {demo.accuracy(small, held_out):.3f}")

# %% [markdown]
# ## 4. Maps and boxes where the truth is known
#
# The network was trained on class labels only, never on boxes. Its vanilla sensitivity map is
# boxed as in notebook 4: a threshold fraction of the maximum, tuned on scenes set aside for
# fitting, then the union of the hot pixels. The center box (the mean box size of those scenes,
# centred) is the baseline.

# %%
fit = scenes.generate(count, seed=3, start=demo.BOX_FIT_START)
vanilla = demo.DEMO_MAPS["vanilla"]
fit_maps, test_maps = demo.scene_maps(small, fit, [vanilla]), demo.scene_maps(small, held_out, [vanilla])
predicted, overlaps = {}, {}
for name in ("vanilla, threshold box", "baseline: center box"):
    protocol = demo.box_protocols()[name].fit(fit_maps, list(fit.boxes[:, None]))
    predicted[name] = protocol.predict(test_maps)
    overlaps[name] = np.array([np.max(iou(p, g)) for p, g in zip(predicted[name], held_out.boxes)])
    print(f"CorLoc {name}: {np.mean(overlaps[name] >= 0.5):.3f}")


def draw_box(ax, box, color):
    """Outline ``box`` (x0, y0, x1, y1) in pixel edges: pixel centres sit at integers."""
    ax.add_patch(Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1],
                           fill=False, color=color, lw=2))


boxes = predicted["vanilla, threshold box"]
fig, axes = plt.subplots(2, 6, figsize=(16, 5.8), constrained_layout=True)
for column in range(6):
    image, heat = held_out.images[column], test_maps[vanilla][column]
    axes[0, column].imshow(image)
    draw_box(axes[0, column], held_out.boxes[column], "lime")
    draw_box(axes[0, column], boxes[column], "red")
    overlap = overlaps["vanilla, threshold box"][column]
    axes[0, column].set_title(f"{scenes.CLASS_NAMES[held_out.labels[column]]}: IoU {overlap:.2f}",
                              fontsize=9)
    shown = axes[1, column].imshow(heat, cmap="inferno")
    draw_box(axes[1, column], boxes[column], "red")
    fig.colorbar(shown, ax=axes[1, column], fraction=0.046, pad=0.02)
    for ax in axes[:, column]:
        ax.axis("off")
axes[1, 0].set_title("max_c |d logit / d pixel|", fontsize=9)
fig.suptitle("true box green, box from the vanilla map red (threshold tuned on the fitting scenes)")
plt.show()
def area(b):
    """Areas (N,) of boxes (N, 4) given as (x0, y0, x1, y1)."""
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


ratio = area(boxes) / area(held_out.boxes)                     # predicted / true box area
for label, mask in [("found (IoU >= 0.5)", overlaps["vanilla, threshold box"] >= 0.5),
                    ("missed", overlaps["vanilla, threshold box"] < 0.5)]:
    print(f"{label:>18}: {mask.sum():4d} scenes; predicted box larger than the true one in "
          f"{np.sum(ratio[mask] > 1):4d}, smaller in {np.sum(ratio[mask] < 1):4d}; "
          f"area ratio median {np.median(ratio[mask]):.2f}")

# %% [markdown]
# Each map has its own colour scale (the colour bars): the gradient's size differs from scene to
# scene, which is why the threshold is a fraction of each map's maximum rather than a fixed value.
# The last line compares the size of the predicted boxes with the true ones, separately for the
# scenes found and the scenes missed.

# %% [markdown]
# **Question 7.3.** The threshold box is the smallest box around *all* pixels above the
# threshold. Look at the printed counts for the missed scenes: are misses mostly boxes that are
# too large or too small? From the maps, what makes such a box too large, what makes it too
# small, and what would you change in the protocol to make it more robust?

# %% [markdown]
# **Your answer:** *(write it here)*

# %% [markdown]
# `sensloc demo` does all of this in one command, with guided backprop and DeepLIFT beside the
# vanilla map, and `sensloc train-demo --seed 0` reproduces the packaged file.
#
# ## Summary
#
# * Training and attribution share one backward pass. The loss gives the first signal,
#   `dL/dz[n, k] = (p[n, k] - 1[k == y_n]) / N`, and each layer with weights reads the signal
#   at its output a second time: `dW = dy^T x` (fully connected),
#   `dw[o, c] = sum_n dy[n, o] (*) x[n, c]` (convolution).
# * Finite differences confirm the weight gradients to many digits in float64, checked at entries
#   whose gradient is not zero: many entries are exactly zero (units whose ReLU is off for the
#   whole batch, inputs that are zero for it), and comparing 0 with 0 checks nothing.
# * A small network on these scenes stays near chance (loss $\log 10$) for hundreds of steps;
#   a last layer drawn ten times smaller starts it at chance instead of above. An accuracy is
#   read against its standard error before calling it better than chance.
# * A network trained on labels alone learns *where* the object is: its sensitivity map boxes
#   objects far better than the center box, with no box ever shown to it.
#
# ## Exercises
#
# 1. Train the student with `SGD(momentum=0.9)` instead of Adam at a few learning rates, and
#    with Adam under a linear warm-up of the learning rate (`Recipe.learning_rate` in
#    `sensloc.training.vgg_small`). Which leaves chance soonest in 300 steps?
# 2. Remove the weight decay. Does the held-out accuracy change? Do the maps change?
# 3. Make the scenes easier (turn `sensloc.data.scenes.generate`'s occlusion off by editing a copy of the
#    generator) and measure how CorLoc of the threshold box moves.
# 4. Replace the threshold box by the least-squares regression of notebook 4
#    (`demo.box_protocols()["vanilla, least-squares regression"]`). Which wins on scenes, and
#    why might that differ from ImageNet photos?
