"""The ``sensloc`` command line.

    sensloc classify IMAGE... [--net NAME] [--weights FILE] [--top 5]
    sensloc explain IMAGE [--net NAME] [--method M] [--target INDEX|top1] [--out heat.png]
                          [--save-npy FILE]
    sensloc weights list | fetch ARCH [--from keras|torchvision] | convert FILE [--out FILE]
    sensloc localize IMAGE... [--net NAME] [--preset NAME | --boxes FILE]
    sensloc fit-boxes DATASET... [--net NAME] (--preset NAME | --method M --protocol P) --out FILE
    sensloc evaluate DATASET... [--net NAME] (--boxes FILE... | --cv K --preset NAME...)
                     [--summary-json S.json] [--plot DIR] [--jobs N] [--dask ADDRESS|local]
    sensloc grade ASSIGNMENT [FILE] [--seed S]
    sensloc demo [--count 4] [--seed S] [--image PHOTO... --net NAME] [--out FIGURE]
    sensloc train-demo [--seed S] [--steps N] [--out FILE]

Errors a user can cause (a missing or corrupt photo, weights that are not installed, a bad
argument) end with one line ``sensloc: error: ...`` and exit status 2, never a stack trace.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from sensloc.data import images
from sensloc.saliency.maps import METHOD_OPTIONS as MAP_METHODS
from sensloc.localize.protocols import PRESETS
from sensloc.localize.presets import PRESET_FRACTIONS

DEFAULT_NET = "squeezenet1_0"
EXPLAIN_METHODS = ("gradient", "gradient_x_input", "guided", "deconvnet", "deeplift",
                   "integrated_gradients", "smoothgrad", "grad_cam", "neuron_selection",
                   "occlusion")


class UsageError(Exception):
    """A mistake on the command line, reported without a traceback."""


def load_network(args):
    """The network named by ``--weights FILE`` or ``--net NAME`` (installed weights)."""
    from sensloc import weights
    return weights.load(args.weights if args.weights else args.net)


def load_inputs(net, paths):
    """Photos as the network's preprocessed batch (N, 3, H, W) and as displayable RGB."""
    from sensloc import weights
    prep = net.preprocessing
    photos = [images.resize_image(images.load_image(p), prep.input_size, prep.resize) for p in paths]
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

def attribution_for(net, x, method, target):
    """The raw attribution of one method: (N, 3, H, W), or (N, h, w) for Grad-CAM."""
    from sensloc import saliency
    if method == "grad_cam":
        return saliency.grad_cam(net, x, target)
    return saliency.METHODS[method](net, x, target)


def heat_from(attribution, size_hw):
    """A displayable (H, W) heat map: channel max of |a|, or Grad-CAM upsampled."""
    from sensloc.saliency import postprocess
    if attribution.ndim == 2:
        return postprocess.upsample(attribution, size_hw)
    return postprocess.reduce_channels(attribution, "max_abs")


def save_overlay(path, photo, heat, title):
    """Photo beside the photo with the heat map laid over it.

    The overlay's opacity follows the heat, so cold regions show the photo unobscured; the
    colour bar gives the attribution's own units.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    norm, cmap = Normalize(heat.min(), heat.max()), plt.get_cmap("inferno")
    layer = cmap(norm(heat))
    layer[..., 3] = 0.85 * np.clip(1.5 * norm(heat), 0, 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), constrained_layout=True)
    axes[0].imshow(photo)
    axes[0].set_title("input")
    axes[1].imshow(photo)
    axes[1].imshow(layer)
    axes[1].set_title(title)
    fig.colorbar(ScalarMappable(norm, cmap), ax=axes[1], fraction=0.046, label="attribution")
    for ax in axes:
        ax.axis("off")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_explain(args):
    net = load_network(args)
    x, photos = load_inputs(net, [args.image])
    logits = net(x)
    target = int(logits[0].argmax()) if args.target == "top1" else int(args.target)
    if not 0 <= target < net.num_classes:
        raise UsageError(f"--target must lie in [0, {net.num_classes}), got {target}")
    attribution = attribution_for(net, x, args.method, target)[0]
    if args.save_npy:
        np.save(args.save_npy, attribution.astype(np.float32))
    heat = heat_from(attribution, x.shape[2:])
    save_overlay(args.out, photos[0], heat, f"{args.method}: {class_name(net, target)} ({target})")
    print(f"{args.image}: {args.method} map for class {target} ({class_name(net, target)}) "
          f"written to {args.out}" + (f", raw attribution to {args.save_npy}" if args.save_npy else ""))


# ------------------------------------------------------------------------------- weights

def cmd_weights_list(args):
    from sensloc import weights
    from sensloc.nets import ARCHITECTURES
    rows = weights.installed()
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
    print(weights.convert(args.file, out=args.out))


# ------------------------------------------------------------------------------- localization

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
    return records


def protocol_from_args(args, architecture):
    """A fresh protocol from ``--preset`` or from ``--method`` and ``--protocol``."""
    from sensloc.saliency.maps import MapSpec
    from sensloc.localize.protocols import RegressionBoxes, ThresholdBoxes, preset
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


def cmd_fit_boxes(args):
    from sensloc.evaluation.boxmodels import save_box_model
    from sensloc.evaluation.runner import Dataset, ensure_maps, load_maps, photo_to_input
    net = load_network(args)
    records = open_datasets(args.datasets)
    protocol = protocol_from_args(args, net.name)
    dataset = Dataset(records)
    ensure_maps(args.weights or weights_path(args.net), net, dataset, protocol.map_specs,
                cache_root(args), args.jobs)
    maps, _ = load_maps(net, dataset, protocol.map_specs, cache_root(args))
    gt = [photo_to_input(r.boxes, (r.width, r.height), net.preprocessing) for r in records]
    protocol.fit(maps, gt)
    save_box_model(args.out, protocol, net, records)
    print(f"{protocol.describe()[:200]}\nfitted on {len(records)} images, written to {args.out}")


def weights_path(name):
    from sensloc import weights
    return weights.resolve(name)


def cmd_evaluate(args):
    from sensloc.evaluation.boxmodels import load_box_model
    from sensloc.evaluation.runner import Config, evaluate
    from sensloc.localize.protocols import preset
    net = load_network(args)
    source = args.weights or weights_path(args.net)
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
    if args.dask:
        from sensloc.evaluation.distributed import require_distributed
        try:
            require_distributed()
        except ImportError as error:
            raise UsageError(str(error)) from error
    records = open_datasets(args.datasets)
    results = args.results or f"results-{net.name}.csv"
    summary, photo_boxes = evaluate(source, records, configs, cache_root(args), results,
                                    k=args.cv, seed=args.seed, jobs=args.jobs, dask=args.dask)
    print(summary.markdown())
    print(f"\nper-image results: {results}")
    if args.summary_json:
        import json
        Path(args.summary_json).write_text(json.dumps(summary.to_json(), indent=2))
    if args.plot:
        from sensloc.evaluation.plots import write_plots
        for path in write_plots(args.plot, summary, records, photo_boxes, net.class_names):
            print(f"figure: {path}")


def cmd_localize(args):
    import json
    from sensloc.evaluation.boxmodels import load_box_model
    from sensloc.evaluation.runner import input_to_photo
    from sensloc.localize.protocols import preset
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
    from sensloc import weights
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, box, target in zip(args.images, boxes, targets):
        photo = images.load_image(path)
        photo_box = input_to_photo(box, (photo.shape[1], photo.shape[0]), net.preprocessing)[0]
        figure = out_dir / f"{Path(path).stem}-box.png"
        draw_box(figure, photo, photo_box, f"{class_name(net, target)}")
        print(json.dumps({"image": str(path), "class_index": int(target),
                          "class_name": class_name(net, target),
                          "box": [round(float(v), 1) for v in photo_box], "figure": str(figure)}))


def draw_box(path, photo, box, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    fig, ax = plt.subplots(figsize=(5, 5 * photo.shape[0] / photo.shape[1]), constrained_layout=True)
    ax.imshow(photo)
    ax.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, color="red", lw=2.5))
    ax.set_title(title)
    ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------- demo

def cmd_demo(args):
    from sensloc.training.vgg_small import demo
    demo(args.out, count=args.count, seed=args.seed, images=args.image, net=load_network(args))


def cmd_train_demo(args):
    import json
    from dataclasses import fields
    from sensloc.training.vgg_small import Recipe, train
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
    parser.add_argument("--net", default=DEFAULT_NET,
                        help=f"installed architecture (default {DEFAULT_NET}); see `sensloc weights list`")
    parser.add_argument("--weights", metavar="FILE", help="a weight file in the project's HDF5 format")


def build_parser():
    parser = argparse.ArgumentParser(prog="sensloc", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("classify", help="top classes of photos")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_net_options(p)
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(run=cmd_classify)

    p = commands.add_parser("explain", help="a heat map of one photo")
    p.add_argument("image", metavar="IMAGE")
    add_net_options(p)
    p.add_argument("--method", choices=EXPLAIN_METHODS, default="gradient")
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
    a.add_argument("architecture")
    a.add_argument("--from", dest="source", choices=("keras", "torchvision"), default=None)
    a.set_defaults(run=cmd_weights_fetch)
    a = actions.add_parser("convert", help="convert a Keras .h5, torchvision .pth or "
                                           "Deep Compression .net file and install it")
    a.add_argument("file")
    a.add_argument("--out", help="write here instead of the user cache")
    a.set_defaults(run=cmd_weights_convert)
    p = commands.add_parser("localize", help="a box around the object in photos")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_net_options(p)
    p.add_argument("--preset", choices=sorted(PRESET_FRACTIONS), help="default khan")
    p.add_argument("--boxes", metavar="FILE", help="a box model from sensloc fit-boxes")
    p.add_argument("--method", help="refuse a box model that does not read this method's maps")
    p.add_argument("--out-dir", default=".", help="where the figures go (default .)")
    p.set_defaults(run=cmd_localize)

    for name, helptext in (("fit-boxes", "fit a box model on datasets"),
                           ("evaluate", "CorLoc of box models or presets on datasets")):
        p = commands.add_parser(name, help=helptext)
        p.add_argument("datasets", nargs="+", metavar="DATASET",
                       help="folder with manifest.csv, VOC folder[:split], or ImageNet XML folder")
        add_net_options(p)
        p.add_argument("--jobs", type=int, default=1, help="worker processes for the maps")
        p.add_argument("--cache", help="map cache folder (default: <user cache>/maps)")
        p.set_defaults(run=cmd_fit_boxes if name == "fit-boxes" else cmd_evaluate)
        if name == "fit-boxes":
            p.add_argument("--preset", choices=sorted(PRESETS))
            p.add_argument("--method", choices=sorted(MAP_METHODS))
            p.add_argument("--reduce", default="max_abs")
            p.add_argument("--protocol", choices=("union", "largest", "regression"), default="union")
            p.add_argument("--out", required=True, help="box model file to write (.h5)")
        else:
            p.add_argument("--boxes", nargs="+", metavar="FILE", help="fitted box models")
            p.add_argument("--preset", nargs="+", choices=sorted(PRESETS),
                           help="presets, cross-validated with --cv folds")
            p.add_argument("--cv", type=int, default=5, help="folds (default 5)")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--results", metavar="CSV", help="per-image results (resumed if present)")
            p.add_argument("--summary-json", metavar="FILE")
            p.add_argument("--plot", metavar="DIR")
            p.add_argument("--dask", metavar="ADDRESS",
                           help="compute the maps on a Dask cluster: a scheduler address "
                                "(tcp://host:8786), a scheduler file (.json), or `local` for a "
                                "LocalCluster of --jobs workers; photos, weights and --cache "
                                "must be at the same paths on the workers (needs "
                                "pip install \"sensloc[dask]\")")

    p = commands.add_parser("demo", help="classify, explain and box generated scenes "
                                         "(no download, no data)")
    p.add_argument("--count", type=int, default=4, help="scenes (default 4)")
    p.add_argument("--seed", type=int, default=0, help="scene stream (default 0)")
    p.add_argument("--image", nargs="+", metavar="PHOTO", help="photos instead of scenes")
    p.add_argument("--net", default="vgg_small",
                   help="network (default vgg_small, packaged; photos want an ImageNet net)")
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
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "target", "top1") != "top1" and not str(args.target).lstrip("-").isdigit():
        parser.error(f"--target must be a class index or top1, got {args.target!r}")
    # A command owns its process: the fast backend and its process settings (never applied on
    # import, so `sensloc --help` and a bad argument end before Numba loads).
    from sensloc import nets
    nets.configure_process()
    try:
        with nets.backend("numba"):
            status = args.run(args)
    except (UsageError, ValueError, OSError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sensloc: error: {message}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
