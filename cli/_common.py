"""What every command shares: the network options, output paths checked before any work and
written atomically, photos read as the network's batch, and the one-line usage error."""
import argparse
import os
from pathlib import Path

import numpy as np

from sensloc.data import images

DEFAULT_NET = "squeezenet1_0"


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


def weights_path(name):
    from sensloc import weights
    return weights.resolve(name)


def add_net_options(parser):
    parser.add_argument("--net", help=f"installed architecture (default {DEFAULT_NET}); see "
                                      "'sensloc weights list'; with --weights, the architecture "
                                      "the file must hold")
    parser.add_argument("--weights", metavar="FILE", help="a weight file in the project's HDF5 format")


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


def same_file(a, b):
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
        if given is not None and same_file(path, given):
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
