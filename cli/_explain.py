"""``sensloc classify`` and ``sensloc explain``: top classes, and one method's heat map of a photo."""
import sys

import numpy as np

from sensloc.cli._common import (UsageError, add_net_options, at_least, class_name, figure_path,
                                 load_inputs, load_network, output_path, same_file, save_figure,
                                 write_atomically)

#: Methods whose channel sum is the attribution (DeepLIFT and integrated gradients sum to the
#: score difference; occlusion is a score difference): shown signed, red positive, blue negative.
#: The others show max |value| over channels (Simonyan et al.'s convention for gradients).
SIGNED_METHODS = ("gradient_x_input", "deeplift", "integrated_gradients", "occlusion")
EXPLAIN_METHODS = ("gradient", "gradient_x_input", "guided", "deconvnet", "deeplift",
                   "integrated_gradients", "smoothgrad", "grad_cam", "neuron_selection",
                   "occlusion")


def cmd_classify(args):
    from sensloc.nets import softmax
    net = load_network(args)
    x, _ = load_inputs(net, args.images)
    probabilities = softmax(net(x).astype(np.float64))
    for path, p in zip(args.images, probabilities):
        print(path)
        for k in np.argsort(-p)[:args.top]:
            print(f"  {p[k]:.4f}  {k:4d}  {class_name(net, k)}")


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
        from sensloc.saliency.occlusion import patch_starts
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
    if save_npy is not None and same_file(out, save_npy):
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


def add_parsers(commands):
    """Register ``classify`` and ``explain`` on the sub-command parsers of ``sensloc``."""
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
