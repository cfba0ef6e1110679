"""``sensloc localize``, ``fit-boxes`` and ``evaluate``: boxes for photos, box models fitted on
datasets, and their CorLoc (the datasets' arguments, checked before any map is computed)."""
from pathlib import Path

from sensloc.data import images
from sensloc.saliency.maps import FEATURE_METHODS, METHOD_OPTIONS
from sensloc.localize.presets import PRESETS
from sensloc.localize.presets import PRESET_FRACTIONS

from sensloc.cli._common import (UsageError, add_net_options, at_least, class_name, load_inputs,
                                 load_network, net_name, output_folder, output_path, same_file,
                                 save_figure, weights_path, write_atomically)


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


def open_extra_training(args, net):
    """The records of ``--extra-training``, checked like the datasets' (an empty list without)."""
    if not args.extra_training:
        return []
    records = open_datasets(args.extra_training)
    check_classes(records, net)
    return records


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
    from sensloc.evaluation.networks import network_identities
    from sensloc.evaluation.reductions import close_rows, reduce_dataset
    from sensloc.evaluation.runner import (extra_training_source, photo_to_input,
                                           training_moments)
    from sensloc.nets.backends import return_freed_memory
    out = output_path(args.out, "--out", [args.weights, *dataset_files(args.datasets),
                                          *dataset_files(args.extra_training or ())])
    net = load_network(args)
    records = open_datasets(args.datasets)
    check_classes(records, net)
    extra = open_extra_training(args, net)
    protocol = protocol_from_args(args, net.name)
    if extra and not protocol.takes_extra_training:
        raise UsageError("--extra-training: only the objectness presets (best, best_two_nets) "
                         "learn from extra training photos")
    try:
        protocol.use_networks(network_identities(net, protocol.map_specs))
    except ValueError as error:  # a map kind names a network that is not installed
        raise UsageError(str(error)) from error
    check_dask(args)
    dataset = Dataset(records)
    args.on_interrupt = lambda: (f"the finished maps are kept in {cache_root(args)}; run the "
                                 "same command again to go on from them")
    source = args.weights or weights_path(net_name(args))
    if extra:
        extra_photos = Dataset(extra)
        if set(extra_photos.digests) & set(dataset.digests):
            raise UsageError("--extra-training: some of its photos are also among the fitted "
                             "datasets' photos")
        protocol.use_extra_training(training_moments(source, net, extra_photos, protocol,
                                                     cache_root(args), args.jobs, dask=args.dask),
                                    extra_training_source(extra_photos))
    ensure_maps(source, net, dataset, protocol.map_specs,
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


def cmd_evaluate(args):
    from sensloc.evaluation.boxmodels import load_box_model
    from sensloc.evaluation.runner import Config, evaluate
    from sensloc.localize.presets import preset
    inputs = [args.weights, *dataset_files(args.datasets), *(args.boxes or ()),
              *dataset_files(args.extra_training or ())]
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
    extra = open_extra_training(args, net)
    results = args.results or f"results-{net.name}.csv"
    if summary_json is not None and same_file(summary_json, results):
        raise UsageError(f"--summary-json and --results are the same file {summary_json}")
    args.on_interrupt = lambda: (
        f"the finished maps are kept in {cache_root(args)}"
        + (f" and the finished rows in {results}" if Path(results).exists() else "")
        + "; run the same command again to resume")
    summary, photo_boxes = evaluate(source, records, configs, cache_root(args), results,
                                    k=args.cv, seed=args.seed, jobs=args.jobs, dask=args.dask,
                                    metrics=metrics, metric_images=args.metric_images,
                                    owns_process=True, extra_records=extra)
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
    from sensloc.evaluation.networks import other_network
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
    maps = {s: s.compute(net, x, targets) for s in protocol.map_specs
            if s.net in (None, net.name)}
    for s in protocol.map_specs:  # another network's maps: its input, its class numbering
        if s not in maps:
            other = other_network(s.net)
            maps[s] = s.compute(other, load_inputs(other, args.images)[0],
                                net.dataset_classes(targets) + other.class_offset)
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


def add_parsers(commands):
    """Register ``localize``, ``fit-boxes`` and ``evaluate`` on the sub-command parsers of ``sensloc``."""
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
        p.add_argument("--extra-training", nargs="+", metavar="DATASET",
                       help="photos with boxes that only train the objectness presets (best, "
                            "best_two_nets: more cells for their ridge, weighted by inner CV), "
                            "never scored; e.g. tiny-imagenet-val")
        p.set_defaults(run=cmd_fit_boxes if name == "fit-boxes" else cmd_evaluate)
        if name == "fit-boxes":
            p.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                           help="a preset to fit: " + ", ".join(sorted(PRESETS)))
            # heat maps only: features (activations, class contributions) are not boxed
            p.add_argument("--method", choices=sorted(set(METHOD_OPTIONS) - FEATURE_METHODS),
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
