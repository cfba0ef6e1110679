# %% [markdown]
# # 6. Training a network with the same backward pass
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
for name, key, index in [("conv1_1", "weight", (2, 1, 0, 2)), ("conv2_1", "bias", (3,)),
                         ("fc6", "weight", (4, 17)), ("fc8", "bias", (1,))]:
    w = tiny.parameters()[name][key][index]
    numeric = (loss_at(name, key, index, w + h) - loss_at(name, key, index, w - h)) / (2 * h)
    print(f"{name}/{key}{index}: backward {grads[name][key][index]: .8f}   "
          f"finite difference {numeric: .8f}")

# %% [markdown]
# ## 3. A training loop
#
# `train_step` is the whole loop body: forward, loss, `backward_parameters`, an optimizer step.
# Adam keeps running means of each gradient and of its square and moves every weight by
# their ratio; `weight_decay` adds `weight_decay * w` to every weight's gradient. Here a small
# network learns from fresh scenes at every step (there is no fixed training set to overfit).

# %%
student = nets.random_parameters(nets.vgg("student", [8, "M", 16, "M", 32, "M", 32, "M"],
                                          num_classes=10, input_size=64, hidden=64), seed=0)
optimizer = Adam(student.parameters(), lr=2e-3, weight_decay=5e-4)
steps = 40 if FAST else 300
losses = []
for step in range(steps):
    batch = scenes.generate(32, seed=1, start=32 * step)
    loss, correct = train_step(student, demo.scene_inputs(batch.images), batch.labels, optimizer)
    losses.append(loss)
plt.figure(figsize=(6, 3))
plt.plot(losses)
plt.axhline(np.log(10), color="0.6", ls="--", label="chance: log 10")
plt.xlabel("step")
plt.ylabel("cross-entropy")
plt.legend()
plt.show()
print(f"loss: first 10 steps {np.mean(losses[:10]):.3f}, last 10 steps {np.mean(losses[-10:]):.3f}")

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
for name in ("vanilla, threshold box", "baseline: center box"):
    protocol = demo.box_protocols()[name].fit(fit_maps, list(fit.boxes[:, None]))
    predicted = protocol.predict(test_maps)
    hits = np.array([np.max(iou(p, g)) >= 0.5 for p, g in zip(predicted, held_out.boxes)])
    print(f"CorLoc {name}: {hits.mean():.3f}")

fig, axes = plt.subplots(2, 6, figsize=(15, 5.4))
for column in range(6):
    image, heat, box = held_out.images[column], test_maps[vanilla][column], held_out.boxes[column]
    axes[0, column].imshow(image)
    axes[0, column].add_patch(Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0],
                                        box[3] - box[1], fill=False, color="lime", lw=2))
    axes[0, column].set_title(scenes.CLASS_NAMES[held_out.labels[column]], fontsize=9)
    axes[1, column].imshow(heat, cmap="inferno")
    for ax in axes[:, column]:
        ax.axis("off")
plt.show()

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
# * Finite differences confirm the weight gradients to many digits in float64.
# * A network trained on labels alone learns *where* the object is: its sensitivity map boxes
#   objects far better than the center box, with no box ever shown to it.
#
# ## Exercises
#
# 1. Train `student` with `SGD(momentum=0.9)` instead of Adam at a few learning rates. Which
#    converges fastest in 300 steps?
# 2. Remove the weight decay. Does the held-out accuracy change? Do the maps change?
# 3. Make the scenes easier (turn `sensloc.data.scenes.generate`'s occlusion off by editing a copy of the
#    generator) and measure how CorLoc of the threshold box moves.
# 4. Replace the threshold box by the least-squares regression of notebook 4
#    (`demo.box_protocols()["vanilla, least-squares regression"]`). Which wins on scenes, and
#    why might that differ from ImageNet photos?
