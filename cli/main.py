"""The ``sensloc`` command line.

    sensloc classify IMAGE... [--net NAME] [--weights FILE] [--top 5]
    sensloc explain IMAGE [--net NAME] [--method M] [--target INDEX|top1] [--out heat.png]
                          [--save-npy FILE]
    sensloc weights list | fetch ARCH [--from keras|torchvision] | convert FILE [--out FILE]
    sensloc localize IMAGE... [--net NAME] [--preset NAME | --boxes FILE]
    sensloc fit-boxes DATASET... [--net NAME] (--preset NAME | --method M --protocol P) --out FILE
    sensloc evaluate DATASET... [--net NAME] (--boxes FILE... | --cv K --preset NAME...)
                     [--summary-json S.json] [--plot DIR] [--jobs N] [--dask ADDRESS|local]
                     [--metrics maxboxacc,maxboxaccv2,loc,pointing,energy,...|all]
    sensloc grade ASSIGNMENT [FILE] [--seed S]
    sensloc demo [--count 4] [--seed S] [--image PHOTO... --net NAME] [--out FIGURE]
    sensloc train-demo [--seed S] [--steps N] [--out FILE]

Errors a user can cause (a missing or corrupt photo, weights that are not installed, a bad
argument) end with one line ``sensloc: error: ...`` and exit status 2, never a stack trace.

Why this file is long (~750 lines): it holds the whole command-line contract, every option,
help text, output-path check and error message, so that it reads and is tested as one. Each
subcommand is a short function that checks its arguments before any work and calls the library;
the work itself lives in the subpackages.

Output paths are checked before any work (their folder exists, they are not an input of the
command), each output is written atomically (complete or absent) and named when written.
Ctrl-C ends with one line saying what was kept (exit status 130).
"""
import argparse
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sensloc.data import images
from sensloc.saliency.maps import METHOD_OPTIONS as MAP_METHODS
from sensloc.localize.presets import PRESETS
from sensloc.localize.presets import PRESET_FRACTIONS

DEFAULT_NET = "squeezenet1_0"
#: Methods whose channel sum is the attribution (DeepLIFT and integrated gradients sum to the
#: score difference; occlusion is a score difference): shown signed, red positive, blue negative.
#: The others show max |value| over channels (Simonyan et al.'s convention for gradients).
SIGNED_METHODS = ("gradient_x_input", "deeplift", "integrated_gradients", "occlusion")
EXPLAIN_METHODS = ("gradient", "gradient_x_input", "guided", "deconvnet", "deeplift",
                   "integrated_gradients", "smoothgrad", "grad_cam", "neuron_selection",
                   "occlusion")


class UsageError(Exception):
    """A mistake on the command line, reported without a traceback."""


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake reported in one line (not the whole usage) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def load_network(args, default=DEFAULT_NET):
    """The network named by ``--weights FILE`` or ``--net NAME`` (installed weights).

    Given both, the file must hold the architecture ``--net`` names (refused otherwise).
    """
    from sensloc import weights
    if args.weights:
        return weights.load(args.weights, architecture=args.net)
    return weights.load(args.net or default)


def net_name(args):
    return args.net or DEFAULT_NET


# ------------------------------------------------------------------------------- arguments, outputs

def at_least(minimum):
    """An argparse type: a whole number >= ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = "number"  # argparse names the type in its message
    return parse


def _same_file(a, b):
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def output_path(path, option, inputs=(), suffix=None):
    """Check an output path before any work; return it (with ``suffix`` added if missing).

    Refused: a folder, a path whose folder does not exist or cannot be written, and any
    input of the command (``inputs``), which would be overwritten.
    """
    path = Path(path)
    if suffix and path.suffix != suffix:
        path = path.with_name(path.name + suffix)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {path}: cannot write in the folder {folder}")
    for given in inputs:
        if given is not None and _same_file(path, given):
            raise UsageError(f"{option} {path} is an input of this command; it would be "
                             "overwritten: give another file name")
    return path


def figure_path(path, option, inputs=()):
    """:func:`output_path` for a figure, whose suffix must name a format Matplotlib writes."""
    from matplotlib.backend_bases import FigureCanvasBase
    path = output_path(path, option, inputs)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix[1:].lower() not in formats:
        raise UsageError(f"{option} {path}: figures are written as "
                         f"{', '.join('.' + f for f in sorted(formats))}, not {path.suffix}")
    return path


def output_folder(path, option):
    """Check a folder to write figures in (created if missing, its parent must exist)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} exists and is not a folder")
    if not path.exists() and not path.parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {path.parent} does not exist")
    return path


def write_atomically(path, write):
    """Call ``write(temporary_path)``, then move the result to ``path`` in one step."""
    from sensloc._files import atomic_write
    with atomic_write(path) as temporary:
        write(temporary)
    return path


def save_figure(fig, path, dpi):
    """Save a Matplotlib figure atomically, in the format its name's suffix says (default PNG)."""
    import matplotlib.pyplot as plt
    try:
        write_atomically(path, lambda temporary: fig.savefig(
            temporary, dpi=dpi, format=Path(path).suffix[1:].lower() or "png"))
    finally:
        plt.close(fig)


def load_inputs(net, paths):
    """Photos as the network's preprocessed batch (N, 3, H, W) and as displayable RGB."""
    prep = net.preprocessing
    photos = [images.load_resized(p, prep.input_size, prep.resize) for p in paths]
    return np.stack([prep.apply(photo) for photo in photos]), photos


def class_name(net, index):
    return net.class_names[index] if net.class_names is not None else f"class {index}"


# ------------------------------------------------------------------------------- classify

def cmd_classify(args):
    from sensloc.nets import softmax
    net = load_network(args)
    x, _ = load_inputs(net, args.images)
    probabilities = softmax(net(x).astype(np.float64))
    for path, p in zip(args.images, probabilities):
        print(path)
        for k in np.argsort(-p)[:args.top]:
            print(f"  {p[k]:.4f}  {k:4d}  {class_name(net, k)}")


# ------------------------------------------------------------------------------- explain

class CountingNetwork:
    """A network whose forward passes advance a progress bar by the images they run; anything
    else is the network's own (for occlusion, hundreds of forward passes, ~15 s on SqueezeNet)."""

    def __init__(self, net, bar):
        self._net, self._bar = net, bar

    def __call__(self, x, *args, **kwargs):
        out = self._net(x, *args, **kwargs)
        self._bar.update(len(x))
        return out

    def __getattr__(self, name):
        return getattr(self._net, name)


def attribution_for(net, x, method, target, progress=False):
    """The raw attribution of one method: (N, 3, H, W), or (N, h, w) for Grad-CAM.

    With ``progress``, occlusion shows its forward passes on a progress bar (stderr).
    """
    from sensloc import saliency
    if method == "grad_cam":
        return saliency.grad_cam(net, x, target)
    if method == "occlusion" and progress:
        from tqdm import tqdm
        from sensloc.saliency.methods import patch_starts
        height, width = x.shape[2:]
        # occlusion's defaults: 32-pixel patches every 16 pixels, plus the unoccluded pass
        passes = len(x) * (1 + len(patch_starts(height, 32, 16)) * len(patch_starts(width, 32, 16)))
        with tqdm(total=passes, unit="img", desc="occlusion") as bar:
            return saliency.METHODS[method](CountingNetwork(net, bar), x, target)
    return saliency.METHODS[method](net, x, target)


def heat_from(attribution, size_hw, signed=False):
    """A displayable (H, W) heat map of a (3, H, W) attribution: its channel sum if ``signed``,
    else the channel max of |a|; an (h, w) Grad-CAM map is upsampled to ``size_hw``."""
    from sensloc.saliency import postprocess
    if attribution.ndim == 2:
        return postprocess.upsample(attribution, size_hw)
    if signed:
        return attribution.sum(axis=0)
    return postprocess.reduce_channels(attribution, "max_abs")


#: Colours saturate at this percentile of |heat|: saliency maps are heavy-tailed (a few pixels
#: hold most of the magnitude), so scaling by the maximum leaves the rest nearly invisible.
CLIP_PERCENTILE = 99


def heat_scale(heat, signed):
    """Normalization and colormap of a heat map (H, W) for display.

    ``s`` = the :data:`CLIP_PERCENTILE`-th percentile of ``|heat|`` (its maximum if that is 0).
    Signed maps: ``[-s, s]`` on a diverging colormap, zero at its white centre. Others:
    ``[0, s]`` on a sequential one. Values beyond are clipped to the end colours.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    magnitude = np.abs(heat)
    scale = float(np.percentile(magnitude, CLIP_PERCENTILE)) or float(magnitude.max()) or 1.0
    if signed:
        return Normalize(-scale, scale, clip=True), colormaps["RdBu_r"]
    return Normalize(0.0, scale, clip=True), colormaps["inferno"]


def save_overlay(path, photo, heat, title, signed=False):
    """The photo, the heat map beside it, and the map laid over the photo.

    Colours follow :func:`heat_scale` (clipped at a high percentile; signed maps diverging
    about zero). In the overlay the opacity follows ``|heat|``, so cold regions show the photo
    unobscured; the colour bar gives the attribution's own units. Written atomically.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    norm, cmap = heat_scale(heat, signed)
    strength = np.abs(heat) / max(abs(norm.vmin), norm.vmax)  # 0 at zero, 1 at the clip
    layer = cmap(norm(heat))
    layer[..., 3] = 0.85 * np.clip(1.5 * strength, 0, 1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), constrained_layout=True)
    axes[0].imshow(photo)
    axes[0].set_title("input")
    axes[1].imshow(heat, cmap=cmap, norm=norm)
    axes[1].set_title(title)
    axes[2].imshow(photo)
    axes[2].imshow(layer)
    axes[2].set_title("over the input")
    fig.colorbar(ScalarMappable(norm, cmap), ax=axes[1], fraction=0.046,
                 label=f"attribution (clipped at the {CLIP_PERCENTILE}th percentile of |value|)")
    for ax in axes:
        ax.axis("off")
    save_figure(fig, path, dpi=110)


def cmd_explain(args):
    inputs = (args.image, args.weights)
    out = figure_path(args.out, "--out", inputs)
    save_npy = output_path(args.save_npy, "--save-npy", inputs, suffix=".npy") \
        if args.save_npy else None
    if save_npy is not None and _same_file(out, save_npy):
        raise UsageError(f"--out and --save-npy are the same file {out}")
    net = load_network(args)
    x, photos = load_inputs(net, [args.image])
    logits = net(x)
    target = int(logits[0].argmax()) if args.target == "top1" else int(args.target)
    if not 0 <= target < net.num_classes:
        raise UsageError(f"--target must lie in [0, {net.num_classes}), got {target}")
    attribution = attribution_for(net, x, args.method, target, progress=True)[0]
    if not np.any(attribution):
        print(f"{args.image}: note: the {args.method} map of class {target} is zero everywhere "
              f"(the backward signal dies inside {net.name}); the figure shows the bare photo. "
              "Try another --method.", file=sys.stderr)
    if save_npy is not None:
        def write_npy(temporary):
            with open(temporary, "wb") as stream:  # a file object: np.save adds no suffix
                np.save(stream, attribution.astype(np.float32))
        write_atomically(save_npy, write_npy)
    signed = args.method in SIGNED_METHODS
    heat = heat_from(attribution, x.shape[2:], signed)
    save_overlay(out, photos[0], heat, f"{args.method}: {class_name(net, target)} ({target})",
                 signed)
    print(f"{args.image}: {args.method} map for class {target} ({class_name(net, target)}) "
          f"written to {out}" + (f", raw attribution to {save_npy}" if save_npy else ""))


# ------------------------------------------------------------------------------- weights

def cmd_weights_list(args):
    from sensloc import weights
    from sensloc.nets import ARCHITECTURES
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = weights.installed()
    for warning in caught:  # an unreadable file in the cache: one line naming it
        print(f"sensloc: warning: {warning.message}", file=sys.stderr)
    if not rows:
        print(f"no weights installed in {weights.default_cache_dir()}; "
              "install with `sensloc weights fetch ARCH` or `sensloc weights convert FILE`")
    for row in rows:
        print("  ".join(str(v) for v in row))
    installed = {row[0] for row in rows}
    for name in sorted(ARCHITECTURES):
        if name not in installed and weights.packaged_path(name).is_file():
            print(f"{name}  {weights.packaged_path(name)}  (packaged: trained by sensloc)")


def cmd_weights_fetch(args):
    from sensloc import weights
    print(weights.fetch(args.architecture, args.source))


def cmd_weights_convert(args):
    from sensloc import weights
    out = output_path(args.out, "--out", [args.file]) if args.out else None
    print(weights.convert(args.file, out=out))


# ------------------------------------------------------------------------------- localization

def dataset_files(paths):
    """The DATASET arguments as files an output must not replace: each, and its manifest."""
    given = [Path(str(p).partition(":")[0]) for p in paths]
    return given + [p / "manifest.csv" for p in given]


def open_datasets(paths):
    """Records of every DATASET argument: a folder with manifest.csv or a manifest CSV file,
    a Pascal VOC folder (``folder:split``, split defaulting to val), or an ImageNet XML folder
    with ``images/`` and ``annotations/`` (class order from the shipped ImageNet list)."""
    from sensloc.data import datasets
    records = []
    for given in paths:
        path, _, split = str(given).partition(":")
        folder = Path(path)
        if (folder / "Annotations").is_dir() and (folder / "JPEGImages").is_dir():
            records += datasets.read_voc(folder, split or "val")
        elif (folder / "annotations").is_dir() and (folder / "images").is_dir():
            from sensloc import weights
            wnids = [wnid for wnid, _ in weights.imagenet_classes()]
            records += datasets.read_imagenet_xml(folder / "images", folder / "annotations", wnids)
        else:
            records += datasets.read_manifest(folder)
    seen = {}
    for record in records:  # results are kept per image id: two images must not share one
        if record.image_id in seen:
            raise UsageError(f"image id {record.image_id!r} is listed twice: {seen[record.image_id]} "
                             f"and {record.path}")
        seen[record.image_id] = record.path
    return records


def protocol_from_args(args, architecture):
    """A fresh protocol from ``--preset`` or from ``--method`` and ``--protocol``."""
    from sensloc.saliency.maps import MapSpec
    from sensloc.localize.presets import preset
    from sensloc.localize.protocols import RegressionBoxes, ThresholdBoxes
    if args.preset:
        return preset(args.preset, architecture)
    if not args.method:
        raise UsageError("give --preset NAME, or --method M with --protocol P")
    spec = MapSpec.make(args.method, args.reduce)
    if args.protocol == "regression":
        return RegressionBoxes([spec])
    return ThresholdBoxes(spec, mode=args.protocol)


def cache_root(args):
    from sensloc import weights
    return Path(args.cache) if args.cache else weights.default_cache_dir() / "maps"


def check_classes(records, net):
    """Refuse, before any map is computed, a record whose class the network does not have."""
    classes = net.num_classes - net.class_offset  # MobileNetV2's "background" is no class
    for record in records:
        if not 0 <= record.class_index < classes:
            raise UsageError(f"{record.path.parent}: image {record.image_id} has class_index "
                             f"{record.class_index}, but {net.name} has {classes} "
                             f"classes (0-{classes - 1})")


def check_dask(args):
    """``--dask`` needs dask.distributed: say how to install it before any work."""
    if args.dask:
        from sensloc.evaluation.distributed import require_distributed
        try:
            require_distributed()
        except ImportError as error:
            raise UsageError(str(error)) from error


def cmd_fit_boxes(args):
    from sensloc.evaluation.boxmodels import save_box_model
    import tempfile
    from sensloc.evaluation.maps import Dataset, ensure_maps
    from sensloc.evaluation.reductions import close_rows, reduce_dataset
    from sensloc.evaluation.runner import photo_to_input
    from sensloc.nets.backends import return_freed_memory
    out = output_path(args.out, "--out", [args.weights, *dataset_files(args.datasets)])
    net = load_network(args)
    records = open_datasets(args.datasets)
    check_classes(records, net)
    protocol = protocol_from_args(args, net.name)
    check_dask(args)
    dataset = Dataset(records)
    args.on_interrupt = lambda: (f"the finished maps are kept in {cache_root(args)}; run the "
                                 "same command again to go on from them")
    ensure_maps(args.weights or weights_path(net_name(args)), net, dataset, protocol.map_specs,
                cache_root(args), args.jobs, dask=args.dask, reducers=(protocol,))
    return_freed_memory()  # the fit's arrays are sized by the dataset
    gt = [photo_to_input(r.boxes, (r.width, r.height), net.preprocessing) for r in records]
    with tempfile.TemporaryDirectory(prefix="reductions-", dir=cache_root(args)) as spill:
        reduced, _ = reduce_dataset(net, dataset, {"fit": protocol}, cache_root(args), spill)
        try:
            protocol.fit_reduced(reduced["fit"], gt)
        finally:
            close_rows(reduced)
    save_box_model(out, protocol, net, records)
    print(f"{protocol.describe()[:200]}\nfitted on {len(records)} images, written to {out}")


def weights_path(name):
    from sensloc import weights
    return weights.resolve(name)


def cmd_evaluate(args):
    from sensloc.evaluation.boxmodels import load_box_model
    from sensloc.evaluation.runner import Config, evaluate
    from sensloc.localize.presets import preset
    inputs = [args.weights, *dataset_files(args.datasets), *(args.boxes or ())]
    summary_json = output_path(args.summary_json, "--summary-json", inputs) \
        if args.summary_json else None
    plot = output_folder(args.plot, "--plot") if args.plot else None
    metrics = ()
    if args.metrics:
        from sensloc.evaluation.standard_metrics import parse_metrics
        try:
            metrics = parse_metrics(args.metrics)
        except ValueError as error:
            raise UsageError(f"--metrics: {error}") from error
    net = load_network(args)
    source = args.weights or weights_path(net_name(args))
    configs = []
    for path in args.boxes or ():
        model = load_box_model(path).check(net)
        configs.append(Config(Path(path).stem, protocol=model.protocol))
    for name in args.preset or ():
        preset(name, net.name)  # fail early on an unknown name
        configs.append(Config(f"{name} ({args.cv}-fold CV)",
                              factory=lambda name=name: preset(name, net.name)))
    if not configs:
        raise UsageError("give --boxes FILE... or --preset NAME... (with --cv K)")
    check_dask(args)
    records = open_datasets(args.datasets)
    check_classes(records, net)
    results = args.results or f"results-{net.name}.csv"
    if summary_json is not None and _same_file(summary_json, results):
        raise UsageError(f"--summary-json and --results are the same file {summary_json}")
    args.on_interrupt = lambda: (
        f"the finished maps are kept in {cache_root(args)}"
        + (f" and the finished rows in {results}" if Path(results).exists() else "")
        + "; run the same command again to resume")
    summary, photo_boxes = evaluate(source, records, configs, cache_root(args), results,
                                    k=args.cv, seed=args.seed, jobs=args.jobs, dask=args.dask,
                                    metrics=metrics, metric_images=args.metric_images,
                                    owns_process=True)
    print(summary.markdown())
    if summary.metrics is not None:
        print("\n" + summary.metrics.markdown())
    print(f"\nper-image results: {results}")
    if summary_json is not None:
        import json
        text = json.dumps(summary.to_json(), indent=2)
        write_atomically(summary_json, lambda temporary: temporary.write_text(text))
        print(f"summary: {summary_json}")
    if plot is not None:
        from sensloc.evaluation.plots import write_plots
        # The figures name records' classes, numbered as the dataset numbers them.
        dataset_names = None if net.class_names is None else net.class_names[net.class_offset:]
        for path in write_plots(plot, summary, records, photo_boxes, dataset_names):
            print(f"figure: {path}")


def cmd_localize(args):
    import json
    from sensloc.evaluation.boxmodels import load_box_model
    from sensloc.localize.presets import preset
    out_dir = output_folder(args.out_dir, "--out-dir")
    figures = figure_names(args.images, out_dir)
    for figure in figures if out_dir.is_dir() else ():  # a new folder holds no input
        output_path(figure, "--out-dir", [*args.images, args.weights, args.boxes])
    net = load_network(args)
    if args.boxes:
        protocol = load_box_model(args.boxes).check(net, args.method).protocol
    else:
        name = args.preset or "khan"
        if name not in PRESET_FRACTIONS:
            raise UsageError(f"preset {name!r} must be fitted first (sensloc fit-boxes ... "
                             f"--preset {name} --out FILE) and given with --boxes FILE")
        protocol = preset(name, net.name)
        protocol.fraction = PRESET_FRACTIONS[name]
    x, photos = load_inputs(net, args.images)
    targets = net(x).argmax(axis=1)
    maps = {s: s.compute(net, x, targets) for s in protocol.map_specs}
    boxes = protocol.predict(maps)
    out_dir.mkdir(exist_ok=True)
    for path, box, target, figure in zip(args.images, boxes, targets, figures):
        size = images.image_size(path)
        photo_box = net.preprocessing.input_to_photo(box, size)[0]
        # Drawn from a copy at most ~2x the figure's pixels; the box stays in photo pixels.
        draw_box(figure, images.load_image(path, min_side=1000), size, photo_box,
                 f"{class_name(net, target)}")
        print(json.dumps({"image": str(path), "class_index": int(target),
                          "class_name": class_name(net, target),
                          "box": [round(float(v), 1) for v in photo_box], "figure": str(figure)}))


def figure_names(paths, out_dir):
    """``<stem>-box.png`` in ``out_dir`` for each photo; photos sharing a stem (a/photo.jpg,
    b/photo.jpg) get their position in the list too, so no figure replaces another."""
    stems = [Path(p).stem for p in paths]
    return [out_dir / (f"{stem}-box.png" if stems.count(stem) == 1 else f"{stem}-{i + 1}-box.png")
            for i, stem in enumerate(stems)]


def draw_box(path, photo, size_wh, box, title):
    """The photo (any resolution, drawn over the full size ``size_wh``) with a red box."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    width, height = size_wh
    fig, ax = plt.subplots(figsize=(5, 5 * height / width), constrained_layout=True)
    ax.imshow(photo, extent=(0, width, height, 0))
    ax.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, color="red", lw=2.5))
    ax.set_title(title)
    ax.axis("off")
    save_figure(fig, path, dpi=100)


# ------------------------------------------------------------------------------- demo

def cmd_demo(args):
    from sensloc.training.vgg_small import demo
    out = figure_path(args.out, "--out", [*(args.image or ()), args.weights])
    for photo in args.image or ():
        images.image_size(photo)  # an unreadable photo is named before any network loads
    # Photos want an ImageNet network: the packaged vgg_small knows only generated shapes.
    net = load_network(args, default=DEFAULT_NET if args.image else "vgg_small")
    demo(out, count=args.count, seed=args.seed, images=args.image, net=net)


def cmd_train_demo(args):
    import json
    from dataclasses import fields
    from sensloc.training.vgg_small import Recipe, train
    output_path(args.out, "--out")
    if args.summary_json:
        output_path(args.summary_json, "--summary-json", [args.out])
    recipe = Recipe(**{field.name: getattr(args, field.name) for field in fields(Recipe)})
    training = train(args.out, recipe, progress=not args.quiet)
    quality = training["held_out"]
    print(f"wrote {args.out}: held-out accuracy {quality['accuracy']:.3f} on "
          f"{quality['count']} scenes, {training['train_seconds']:.0f} s of training")
    for name, row in quality["corloc"].items():
        print(f"  CorLoc {name}: {100 * row['gt_known']:.1f}% "
              f"[{100 * row['ci95'][0]:.1f}-{100 * row['ci95'][1]:.1f}]")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(training, indent=2))


# ------------------------------------------------------------------------------- parser

def add_net_options(parser):
    parser.add_argument("--net", help=f"installed architecture (default {DEFAULT_NET}); see "
                                      "'sensloc weights list'; with --weights, the architecture "
                                      "the file must hold")
    parser.add_argument("--weights", metavar="FILE", help="a weight file in the project's HDF5 format")


def build_parser():
    from sensloc import __version__
    parser = Parser(
        prog="sensloc", description="Weakly supervised object localization from saliency: "
        "classify photos, explain a class with a heat map, box the object, evaluate CorLoc.")
    parser.add_argument("--version", action="version", version=f"sensloc {__version__}")
    parser.add_argument("--backend", choices=("auto", "numpy", "numba"), default="auto",
                        help="what computes the networks: NumPy, or Numba's compiled kernels "
                             "(compiled on first use after installing, ~25 s, then cached); "
                             "auto (default): NumPy for a few single-pass maps, Numba for the "
                             "rest")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("classify", help="top classes of photos")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos")
    add_net_options(p)
    p.add_argument("--top", type=at_least(1), default=5, help="classes shown per photo (default 5)")
    p.set_defaults(run=cmd_classify)

    p = commands.add_parser("explain", help="a heat map of one photo")
    p.add_argument("image", metavar="IMAGE", help="a photo")
    add_net_options(p)
    p.add_argument("--method", choices=EXPLAIN_METHODS, default="gradient",
                   help="saliency method (default gradient)")
    p.add_argument("--target", default="top1", help="class index, or top1 (default)")
    p.add_argument("--out", default="heat.png", help="figure to write (default heat.png)")
    p.add_argument("--save-npy", metavar="FILE",
                   help="save the raw attribution, float32 (3, H, W) at the network's input "
                        "resolution before any reduction ((h, w) at the layer for grad_cam)")
    p.set_defaults(run=cmd_explain)

    p = commands.add_parser("weights", help="install and list weights")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="installed weights")
    a.set_defaults(run=cmd_weights_list)
    a = actions.add_parser("fetch", help="download, verify (SHA-256), convert and install")
    a.add_argument("architecture", help="e.g. vgg16, squeezenet1_0")
    a.add_argument("--from", dest="source", choices=("keras", "torchvision"), default=None,
                   help="where to download from (default: the architecture's first source)")
    a.set_defaults(run=cmd_weights_fetch)
    a = actions.add_parser("convert", help="convert a Keras .h5, torchvision .pth, Deep "
                                           "Compression .net or MobileNetV2 .tflite file and "
                                           "install it")
    a.add_argument("file", help="the file to convert")
    a.add_argument("--out", help="write here instead of the user cache")
    a.set_defaults(run=cmd_weights_convert)
    p = commands.add_parser("localize", help="a box around the object in photos")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos")
    add_net_options(p)
    p.add_argument("--preset", choices=sorted(PRESET_FRACTIONS), help="box preset (default khan)")
    p.add_argument("--boxes", metavar="FILE", help="a box model from sensloc fit-boxes")
    p.add_argument("--method", help="refuse a box model that does not read this method's maps")
    p.add_argument("--out-dir", default=".", help="where the figures <photo>-box.png go "
                                                  "(default: the current folder)")
    p.set_defaults(run=cmd_localize)

    for name, helptext in (("fit-boxes", "fit a box model on datasets"),
                           ("evaluate", "CorLoc of box models or presets on datasets")):
        p = commands.add_parser(name, help=helptext)
        p.add_argument("datasets", nargs="+", metavar="DATASET",
                       help="folder with manifest.csv, VOC folder[:split], or ImageNet XML folder")
        add_net_options(p)
        p.add_argument("--jobs", type=at_least(1), default=1,
                       help="worker processes for the maps (default 1)")
        p.add_argument("--cache", help="map cache folder (default: <user cache>/maps)")
        p.add_argument("--dask", metavar="ADDRESS",
                       help="compute the maps on a Dask cluster: a scheduler address "
                            "(tcp://host:8786), a scheduler file (.json), or 'local' for a "
                            "LocalCluster of --jobs workers; photos, weights and --cache "
                            "must be at the same paths on the workers (needs "
                            "pip install \"sensloc[dask]\")")
        p.set_defaults(run=cmd_fit_boxes if name == "fit-boxes" else cmd_evaluate)
        if name == "fit-boxes":
            p.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                           help="a preset to fit: " + ", ".join(sorted(PRESETS)))
            p.add_argument("--method", choices=sorted(MAP_METHODS),
                           help="or: the saliency method of the maps to box")
            p.add_argument("--reduce", default="max_abs",
                           help="how --method's channels become one map (default max_abs)")
            p.add_argument("--protocol", choices=("union", "largest", "regression"), default="union",
                           help="how --method's map becomes a box (default union)")
            p.add_argument("--out", required=True, help="box model file to write (.h5)")
        else:
            p.add_argument("--boxes", nargs="+", metavar="FILE", help="fitted box models")
            p.add_argument("--preset", nargs="+", choices=sorted(PRESETS), metavar="NAME",
                           help="presets, cross-validated with --cv folds: "
                                + ", ".join(sorted(PRESETS)))
            p.add_argument("--cv", type=at_least(2), default=5, help="folds (default 5)")
            p.add_argument("--seed", type=int, default=0,
                           help="seed of the cross-validation folds (default 0)")
            p.add_argument("--results", metavar="CSV",
                           help="per-image results, resumed if they come from the same inputs "
                                "(default results-<net>.csv)")
            p.add_argument("--summary-json", metavar="FILE", help="also write the table as JSON")
            p.add_argument("--plot", metavar="DIR", help="write figures in this folder")
            p.add_argument("--metrics", metavar="NAMES",
                           help="also the field's standard metrics, comma-separated: maxboxacc, "
                                "maxboxaccv2, loc, pointing, energy, deletion, insertion, "
                                "sanity, or all (see evaluation/standard_metrics.py)")
            p.add_argument("--metric-images", type=at_least(1), default=32, metavar="N",
                           help="photos for deletion, insertion and sanity (default 32, a "
                                "seeded sample: they run the network ~40 times per photo)")

    p = commands.add_parser("demo", help="classify, explain and box generated scenes "
                                         "(no download, no data)")
    p.add_argument("--count", type=int, default=4, help="scenes (default 4)")
    p.add_argument("--seed", type=int, default=0, help="scene stream (default 0)")
    p.add_argument("--image", nargs="+", metavar="PHOTO", help="photos instead of scenes")
    p.add_argument("--net", help="network (default: the packaged vgg_small for scenes, "
                                 f"{DEFAULT_NET} for photos)")
    p.add_argument("--weights", metavar="FILE", help="a weight file in the project's HDF5 format")
    p.add_argument("--out", default="sensloc-demo.png", help="figure (default sensloc-demo.png)")
    p.set_defaults(run=cmd_demo)

    from dataclasses import fields
    from sensloc.training.vgg_small import Recipe
    p = commands.add_parser("train-demo", help="train vgg_small on generated scenes (reproduces "
                                               "the packaged weights from the seed)")
    p.add_argument("--out", default="vgg_small.h5", help="weight file (default vgg_small.h5)")
    for field in fields(Recipe):  # one option per recipe field, as Recipe.command() writes them
        p.add_argument(f"--{field.name.replace('_', '-')}", type=field.type,
                       default=field.default, help=f"default {field.default}")
    p.add_argument("--summary-json", metavar="FILE", help="also write the training record here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train_demo)

    from sensloc.coursework.grade import add_parser as add_grade_parser
    add_grade_parser(commands)
    _plain_help(parser)
    return parser


def _plain_help(parser):
    """Help texts as plain text: docstrings' reStructuredText (``code``, :func:`name`) unmarked,
    in this parser and every subcommand's (some take their description from a docstring)."""
    import re

    def plain(text):
        return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "'") if text else text
    parser.description = plain(parser.description)
    for action in parser._actions:
        action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain(choice.help)
            for sub in set(action.choices.values()):
                _plain_help(sub)


def report(line):
    """Print one line to stderr, on a line of its own even after a progress bar."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm
        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()  # ends the bar's line (and it is not drawn again at exit)
    print(line, file=sys.stderr)


def interrupted(args):
    """The one line a Ctrl-C ends with: what was kept, and how to go on."""
    kept = getattr(args, "on_interrupt", None)
    return "sensloc: interrupted" + (f"; {kept()}" if kept else "")


#: Saliency methods that cost one forward and one backward pass per image.
SINGLE_PASS_METHODS = ("gradient", "gradient_x_input", "guided", "deconvnet", "deeplift",
                       "grad_cam")
#: At most this many images count as small work (see :func:`command_backend`).
SMALL_WORK_IMAGES = 8


def command_backend(args):
    """The backend a command computes on: "numpy" for small work, "numba" for the rest.

    Small work is ``explain`` with a single-pass method, ``classify`` of at most
    :data:`SMALL_WORK_IMAGES` photos and ``demo`` of at most that many images: a SqueezeNet
    gradient map takes ~0.3-0.9 s on NumPy, less than Numba needs to load its compiled
    kernels from a warm cache (~1-2 s) and far less than compiling them into an empty one
    (~25 s, the first run after installing; ``benchmarks/first_run.py``). Everything else
    (``evaluate``, ``fit-boxes``, ``localize``, ``train-demo``, many-pass methods) runs on
    Numba, whose compile cost is paid once and then amortised. The choice depends on the
    command and its arguments only, never on the state of the Numba cache, so a command's
    output is the same whether the cache was cold or warm (``evaluate``'s maps and their cache
    always come from Numba). ``sensloc --backend numpy|numba`` overrides it.
    """
    if getattr(args, "backend", "auto") != "auto":
        return args.backend
    command = getattr(args, "command", None)
    if command == "explain":
        small = args.method in SINGLE_PASS_METHODS
    elif command == "classify":
        small = len(args.images) <= SMALL_WORK_IMAGES
    elif command == "demo":
        small = (len(args.image) if args.image else args.count) <= SMALL_WORK_IMAGES
    else:
        small = False
    return "numpy" if small else "numba"


@contextmanager
def running_on(name):
    """The block on backend ``name``; on "numpy", with BLAS on one thread.

    One thread because the work is small: a second OpenBLAS thread saves little on one photo,
    and its pool spins between calls; on the 2-core development machine under load a
    SqueezeNet gradient took 7 s with two BLAS threads and 0.9 s with one.
    """
    from sensloc import nets
    with nets.backend(name):
        if name != "numpy":
            yield
            return
        import threadpoolctl
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            yield


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "target", "top1") != "top1" and not str(args.target).lstrip("-").isdigit():
        parser.error(f"--target must be a class index or top1, got {args.target!r}")
    # A command owns its process: its backend (command_backend) and the fast backend's process
    # settings (never applied on import, so `sensloc --help` and a bad argument end before
    # Numba loads).
    from sensloc import nets
    nets.configure_process()
    try:
        with running_on(command_backend(args)):
            status = args.run(args)
    except (UsageError, ValueError, OSError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        report(f"sensloc: error: {message}")
        return 2
    except KeyboardInterrupt:
        report(interrupted(args))
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
