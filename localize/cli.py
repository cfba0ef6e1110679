"""The ``sensloc`` command line.

    sensloc classify IMAGE... [--net NAME] [--weights FILE] [--top 5]
    sensloc explain IMAGE [--net NAME] [--method M] [--target INDEX|top1] [--out heat.png]
                          [--save-npy FILE]
    sensloc weights list | fetch ARCH [--from keras|torchvision] | convert FILE [--out FILE]

Errors a user can cause (a missing or corrupt photo, weights that are not installed, a bad
argument) end with one line ``sensloc: error: ...`` and exit status 2, never a stack trace.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

DEFAULT_NET = "squeezenet1_0"
EXPLAIN_METHODS = ("gradient", "gradient_x_input", "guided", "deconvnet", "deeplift",
                   "integrated_gradients", "smoothgrad", "grad_cam", "neuron_selection")


class UsageError(Exception):
    """A mistake on the command line, reported without a traceback."""


def load_network(args):
    """The network named by ``--weights FILE`` or ``--net NAME`` (installed weights)."""
    import weights
    return weights.load(args.weights if args.weights else args.net)


def load_inputs(net, paths):
    """Photos as the network's preprocessed batch (N, 3, H, W) and as displayable RGB."""
    import weights
    prep = net.preprocessing
    photos = [weights.resize_image(weights.load_image(p), prep.input_size, prep.resize) for p in paths]
    return np.stack([prep.apply(photo) for photo in photos]), photos


def class_name(net, index):
    return net.class_names[index] if net.class_names is not None else f"class {index}"


# ------------------------------------------------------------------------------- classify

def cmd_classify(args):
    from nets import softmax
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
    import saliency
    if method == "grad_cam":
        return saliency.grad_cam(net, x, target)
    return saliency.METHODS[method](net, x, target)


def heat_from(attribution, size_hw):
    """A displayable (H, W) heat map: channel max of |a|, or Grad-CAM upsampled."""
    from saliency import postprocess
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
    import weights
    rows = weights.installed()
    if not rows:
        print(f"no weights installed in {weights.default_cache_dir()}; "
              "install with `sensloc weights fetch ARCH` or `sensloc weights convert FILE`")
    for row in rows:
        print("  ".join(str(v) for v in row))


def cmd_weights_fetch(args):
    import weights
    print(weights.fetch(args.architecture, args.source))


def cmd_weights_convert(args):
    import weights
    print(weights.convert(args.file, out=args.out))


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
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "target", "top1") != "top1" and not str(args.target).lstrip("-").isdigit():
        parser.error(f"--target must be a class index or top1, got {args.target!r}")
    try:
        args.run(args)
    except (UsageError, ValueError, OSError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sensloc: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
