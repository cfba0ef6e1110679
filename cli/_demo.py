"""``sensloc demo`` and ``sensloc train-demo``: generated scenes, and the packaged network trained on them."""
from pathlib import Path

from sensloc.data import images

from sensloc.cli._common import DEFAULT_NET, figure_path, load_network, output_path


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


def add_parsers(commands):
    """Register ``demo`` and ``train-demo`` on the sub-command parsers of ``sensloc``."""
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
