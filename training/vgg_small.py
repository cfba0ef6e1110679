"""The embedded default: a small VGG that sensloc trains itself on generated scenes.

Pretrained ImageNet weights cannot ship inside the repository, so the library trains
:func:`nets.vgg_small` with its own backward passes (:mod:`nets.training`) on scenes from
:mod:`scenes`, where every object's box is known by construction. :func:`train` reproduces the
committed file ``weights/data/vgg_small.h5`` from a seed; :func:`held_out_quality` measures it
on scenes it never saw.

Scene streams: training reads scenes ``0, 1, 2, ...`` of stream ``seed``; held-out scenes start
at :data:`HELD_OUT_START` of the same stream, far beyond anything training reads, so the two
never overlap (a scene depends only on its stream and index).
"""
import hashlib
import json
import math
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sensloc import nets
from sensloc.data import scenes
from sensloc import weights
from sensloc.nets.training import Adam, train_step
from sensloc.data.images import Preprocessing, load_resized

from sensloc.localize.boxes import iou
from sensloc.saliency.maps import MapSpec
from sensloc.localize.metrics import bootstrap_ci
from sensloc.localize.protocols import (CenterBox, KhanBoxes, RegressionBoxes, ThresholdBoxes,
                                        WholeImage)
from sensloc.evaluation.workers import single_threaded, spawn_pool

#: The committed weights, found by ``weights.load("vgg_small")``.
PACKAGED_WEIGHTS = Path(weights.__file__).parent / "data" / "vgg_small.h5"
#: First index of the held-out scenes of a stream.
HELD_OUT_START = 10 ** 9

#: Scenes are RGB 0..255; the network sees them centred at 0.5 and scaled by 0.25.
SCENE_PREPROCESSING = Preprocessing(input_size=(64, 64), channel_order="RGB",
                                    pixel_scale=1 / 255, mean=(0.5, 0.5, 0.5),
                                    std=(0.25, 0.25, 0.25), resize="squash")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights (with the code itself).

    Adam with L2 weight decay on a linear warm-up then a cosine decay of the learning rate to 0:
    ``lr_t = lr * min(1, t / warmup) * (1 + cos(pi t / steps)) / 2``. Every step sees
    ``batch_size`` fresh scenes, so there is nothing to overfit and no epochs.
    """
    seed: int = 0
    steps: int = 7000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 5e-4
    init_seed: int = 0

    def learning_rate(self, step):
        warm = min(1.0, (step + 1) / self.warmup)
        return self.lr * warm * 0.5 * (1 + math.cos(math.pi * step / self.steps))

    def command(self):
        """The command line that reproduces a file trained with this recipe."""
        defaults = Recipe()
        options = [f"--{key.replace('_', '-')} {value}" for key, value in asdict(self).items()
                   if value != getattr(defaults, key) and key != "seed"]
        return " ".join(["sensloc train-demo", f"--seed {self.seed}"] + options)


def scene_inputs(images, preprocessing=SCENE_PREPROCESSING):
    """Scenes (or photos at the input size), (N, H, W, 3) uint8 RGB, as the network's input
    batch (N, 3, H, W) float32."""
    return np.stack([preprocessing.apply(image) for image in images])


def predicted_classes(net, images, batch_size=250):
    """The class ``net`` gives each of ``images`` (N, H, W, 3) uint8, as (N,) int."""
    return np.concatenate([
        net(scene_inputs(images[start:start + batch_size], net.preprocessing)).argmax(axis=1)
        for start in range(0, len(images), batch_size)])


def accuracy(net, batch):
    """Share of ``batch`` (a :class:`scenes.Scenes`) classified right."""
    return float(np.mean(predicted_classes(net, batch.images) == batch.labels))


def _scene_batch(seed, start, count):
    batch = scenes.generate(count, seed=seed, start=start)
    return batch.images, batch.labels


def training_batches(recipe, ahead=4):
    """``(images, labels)`` for every step of ``recipe``, in order.

    A worker process generates them up to ``ahead`` steps in advance, so scene making (one
    core) overlaps the training step (the other core) and memory stays bounded.
    """
    with spawn_pool(1) as pool:
        pending = deque()
        for step in range(recipe.steps):
            while len(pending) < ahead and step + len(pending) < recipe.steps:
                start = (step + len(pending)) * recipe.batch_size
                pending.append(pool.apply_async(_scene_batch,
                                                (recipe.seed, start, recipe.batch_size)))
            yield pending.popleft().get()


def train(out, recipe=Recipe(), progress=True, held_out=2000):
    """Train ``vgg_small`` on generated scenes and write it in the project's format.

    Runs on the "numba" backend (:mod:`nets.backends`; the caller's is restored on return).

    Parameters
    ----------
    out : str or os.PathLike
        Destination weight file (written atomically at the end).
    recipe : Recipe
    progress : bool
        A progress bar on stderr with the running loss, accuracy and images per second.
    held_out : int
        Held-out scenes for the quality written into the file's ``training`` attribute
        (:func:`held_out_quality`).

    Returns
    -------
    dict
        The ``training`` attribute written: seed, command, recipe, seconds, and the held-out
        quality with the fitted box protocols' parameters (the demo's threshold among them).
    """
    from tqdm import tqdm

    net = nets.random_parameters(nets.vgg_small(num_classes=len(scenes.CLASS_NAMES)),
                                 recipe.init_seed)
    net.preprocessing, net.class_names = SCENE_PREPROCESSING, list(scenes.CLASS_NAMES)
    optimizer = Adam(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    started = time.perf_counter()
    running_loss, running_correct, seen = None, 0.0, 0
    bar = tqdm(training_batches(recipe), total=recipe.steps, disable=not progress,
               file=sys.stderr, unit="step", desc="train-demo")
    # The fast backend, whatever the caller's: the committed weights were trained on it, and
    # training is reproducible bit for bit only on the same kernels.
    with nets.backend("numba"), single_threaded():
        for step, (images, labels) in enumerate(bar):
            optimizer.lr = recipe.learning_rate(step)
            loss, correct = train_step(net, scene_inputs(images), labels, optimizer)
            # Exponential running means: the bar shows the recent past, not the whole run.
            running_loss = loss if running_loss is None else 0.98 * running_loss + 0.02 * loss
            running_correct = 0.98 * running_correct + 0.02 * correct / recipe.batch_size
            seen += recipe.batch_size
            if step % 10 == 0 or step == recipe.steps - 1:
                bar.set_postfix(loss=f"{running_loss:.3f}",
                                acc=f"{running_correct / (1 - 0.98 ** (step + 1)):.3f}",
                                img_s=f"{seen / (time.perf_counter() - started):.0f}")
        seconds = time.perf_counter() - started
        quality = held_out_quality(net, recipe.seed, count=held_out)
    recipe_json = json.dumps(asdict(recipe), sort_keys=True)
    training = {"seed": recipe.seed, "command": recipe.command(), "recipe": asdict(recipe),
                "classes": list(scenes.CLASS_NAMES), "train_seconds": round(seconds, 1),
                "images_seen": seen, "held_out": quality}
    # The "source" of a trained network is its recipe: the SHA-256 names it exactly.
    weights.save(out, net, SCENE_PREPROCESSING, net.class_names, source_file="recipe.json",
                 source_sha256=hashlib.sha256(recipe_json.encode()).hexdigest(),
                 architecture_options={"num_classes": net.num_classes},
                 training=training)
    return training


# ------------------------------------------------------------------------------ quality

#: First scene index of the stream that box models are fitted on (training data for them,
#: disjoint from both the network's training scenes and the held-out scenes).
BOX_FIT_START = 5 * 10 ** 8

#: The three maps of the demo: the vanilla sensitivity map, guided backprop and DeepLIFT.
DEMO_MAPS = {"vanilla": MapSpec.make("gradient", "max_abs"),
             "guided": MapSpec.make("guided", "max_abs"),
             "deeplift": MapSpec.make("deeplift", "sum", reference="zero")}


def scene_maps(net, batch, specs, targets=None, batch_size=250):
    """``{spec: (N, H, W)}`` heat maps of scenes for ``targets`` (default: the true classes)."""
    targets = batch.labels if targets is None else targets
    maps = {spec: [] for spec in specs}
    for start in range(0, len(batch.labels), batch_size):
        x = scene_inputs(batch.images[start:start + batch_size], net.preprocessing)
        for spec in specs:
            maps[spec].append(spec.compute(net, x, targets[start:start + batch_size]))
    return {spec: np.concatenate(parts) for spec, parts in maps.items()}


def box_protocols():
    """The box protocols measured on scenes, by name (baselines last)."""
    vanilla, guided, deeplift = DEMO_MAPS["vanilla"], DEMO_MAPS["guided"], DEMO_MAPS["deeplift"]
    return {
        "vanilla, threshold box": ThresholdBoxes(vanilla, mode="union"),
        "vanilla, least-squares regression": RegressionBoxes([vanilla], grid_sizes=(8,)),
        "guided, threshold box": ThresholdBoxes(guided, mode="union"),
        "deeplift, threshold box": ThresholdBoxes(deeplift, mode="union"),
        # Khan's smoothing of 4 px was for 227 px photos; 1.5 px is the same share of 64.
        "khan (deeplift x guided)": KhanBoxes(deeplift, guided, sigma=1.5),
        "baseline: center box": CenterBox(),
        "baseline: whole image": WholeImage(),
    }


def held_out_quality(net, seed=0, count=1000, fit_count=1000):
    """Accuracy and CorLoc of ``net`` on scenes it never saw.

    Box protocols are fitted (thresholds tuned, regression solved, mean box size taken) on
    ``fit_count`` scenes from :data:`BOX_FIT_START` and measured on ``count`` held-out scenes
    from :data:`HELD_OUT_START`, both of stream ``seed``. Maps explain the true class
    (CorLoc "GT-known"); ``top1`` also requires the right prediction.

    Returns
    -------
    dict
        ``accuracy``, ``count``, and ``corloc``: ``{protocol name: {"gt_known", "top1",
        "ci95", "params"}}``.
    """
    fit = scenes.generate(fit_count, seed=seed, start=BOX_FIT_START)
    test = scenes.generate(count, seed=seed, start=HELD_OUT_START)
    correct = predicted_classes(net, test.images) == test.labels
    specs = list(DEMO_MAPS.values())
    fit_maps, test_maps = scene_maps(net, fit, specs), scene_maps(net, test, specs)
    fit_gt, test_gt = list(fit.boxes[:, None, :]), list(test.boxes[:, None, :])
    results = {}
    for name, protocol in box_protocols().items():
        protocol.fit(fit_maps, fit_gt)
        boxes = protocol.predict(test_maps)
        hits = np.array([iou(b, g).max() >= 0.5 for b, g in zip(boxes, test_gt)])
        low, high = bootstrap_ci(hits)
        params = protocol.params()
        results[name] = {"gt_known": float(hits.mean()), "top1": float((hits & correct).mean()),
                         "ci95": [low, high],
                         "params": {k: v for k, v in params.items() if k != "weights"}}
    return {"accuracy": float(correct.mean()), "count": count, "fit_count": fit_count,
            "corloc": results}


# ------------------------------------------------------------------------------ the demo

#: The protocol that boxes the demo's objects: Khan et al.'s mix of DeepLIFT and guided backprop.
DEMO_BOXES = "khan (deeplift x guided)"


def demo_protocol(net, photos):
    """Khan et al.'s protocol with a fitted threshold: for scenes, the fraction tuned on the
    box-fitting scenes when the network was trained (recorded in its file); for photos, the
    ``khan`` preset's (:data:`sensloc.localize.presets.PRESET_FRACTIONS`)."""
    from sensloc.localize.presets import PRESET_FRACTIONS
    from sensloc.localize.presets import preset
    if photos:
        protocol = preset("khan", net.name)
        protocol.fraction = PRESET_FRACTIONS["khan"]
        return protocol
    training = (net.source or {}).get("training")
    if not training:
        raise ValueError(f"{net.name} has no training record with a fitted box threshold; "
                         "give photos with --image, or use a network trained by train-demo")
    protocol = box_protocols()[DEMO_BOXES]
    protocol.fraction = training["held_out"]["corloc"][DEMO_BOXES]["params"]["fraction"]
    return protocol


def demo(out="sensloc-demo.png", count=4, seed=0, images=None, net=None):
    """Classify, explain and box a few scenes (or photos); print the results, save one figure.

    Parameters
    ----------
    out : str or os.PathLike
        The figure: one row per image; the image with its true box (green) and the box from
        Khan et al.'s mix of the DeepLIFT and guided maps (red), then the vanilla, guided and
        DeepLIFT maps.
    count, seed : int
        How many scenes, and their stream: held-out scenes (from :data:`HELD_OUT_START`), never
        seen in training whatever the stream. Ignored when photos are given.
    images : list of paths, optional
        Photos instead of scenes (no true box then).
    net : nets.Network, optional
        Default: the packaged ``vgg_small``.

    Returns
    -------
    list of dict
        Per image: ``name``, ``predicted``, ``probability``, ``box`` (input pixels), and for
        scenes ``true_class``, ``true_box``, ``iou``.
    """
    from sensloc.nets import softmax
    net = weights.load("vgg_small") if net is None else net
    prep = net.preprocessing
    if images:
        pictures = [load_resized(p, prep.input_size, prep.resize) for p in images]
        names, true_classes, true_boxes = [str(p) for p in images], None, None
    else:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        batch = scenes.generate(count, seed=seed, start=HELD_OUT_START)
        pictures, true_classes, true_boxes = list(batch.images), batch.labels, batch.boxes
        names = [f"scene {i + 1}" for i in range(count)]
    protocol = demo_protocol(net, bool(images))
    x = scene_inputs(pictures, prep)
    probabilities = softmax(net(x).astype(np.float64))
    predicted = probabilities.argmax(axis=1)
    maps = {name: spec.compute(net, x, predicted) for name, spec in DEMO_MAPS.items()}
    boxes = protocol.predict({spec: maps[name] for name, spec in DEMO_MAPS.items()})
    results = []
    for i, name in enumerate(names):
        result = {"name": name, "predicted": net.class_names[predicted[i]],
                  "probability": round(float(probabilities[i, predicted[i]]), 3),
                  "box": [round(float(v), 1) for v in boxes[i]]}
        line = f"{name}: {result['predicted']} ({result['probability']:.2f})"
        if true_classes is not None:
            overlap = float(np.max(iou(boxes[i], true_boxes[i])))
            result.update(true_class=net.class_names[true_classes[i]],
                          true_box=[round(float(v), 1) for v in true_boxes[i]],
                          iou=round(overlap, 2))
            line += (f", truly {result['true_class']}; box IoU {overlap:.2f} "
                     f"({'found' if overlap >= 0.5 else 'missed'})")
        print(line)
        results.append(result)
    _demo_figure(out, pictures, maps, boxes, true_boxes, results)
    print(f"figure: {out}")
    return results


def _demo_figure(path, pictures, maps, boxes, true_boxes, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    columns = [("image", None), ("vanilla |gradient|", "vanilla"), ("guided backprop", "guided"),
               ("DeepLIFT (rescale)", "deeplift")]
    fig, axes = plt.subplots(len(pictures), 4, figsize=(9, 2.4 * len(pictures)), squeeze=False,
                             constrained_layout=True)
    for i, picture in enumerate(pictures):
        for ax, (title, key) in zip(axes[i], columns):
            ax.axis("off")
            if key is None:
                ax.imshow(picture)
                if true_boxes is not None:
                    box = true_boxes[i]
                    ax.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False,
                                           color="lime", lw=2))
                ax.add_patch(Rectangle(boxes[i][:2], *(boxes[i][2:] - boxes[i][:2]), fill=False,
                                       color="red", lw=2))
                label = results[i]["predicted"]
                if "iou" in results[i]:
                    label += f" (IoU {results[i]['iou']:.2f})"
                ax.set_title(label, fontsize=9)
            elif key == "deeplift":  # signed: red adds to the class score, blue takes away
                heat = maps[key][i]
                limit = max(float(np.abs(heat).max()), 1e-12)
                ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit)
                ax.set_title(title, fontsize=9)
            else:
                ax.imshow(maps[key][i], cmap="inferno")
                ax.set_title(title, fontsize=9)
    # Photos have no true box to draw: the title promises the green one only for scenes.
    found = "red: box from the DeepLIFT and guided maps (Khan et al.)"
    fig.suptitle(found if true_boxes is None else f"true box green; {found}", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
