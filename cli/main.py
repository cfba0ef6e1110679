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

This module builds the parser and runs a command (its backend, its errors, Ctrl-C); each family
of commands is a module that registers its options and holds its ``cmd_*`` functions:
``_explain`` (classify, explain), ``_weights``, ``_localize`` (localize, fit-boxes, evaluate),
``_demo`` (demo, train-demo), and :mod:`sensloc.coursework.grade` (grade). ``_common`` holds
what they share. Each command is a short function that checks its arguments before any work
and calls the library; the work itself lives in the subpackages.

Output paths are checked before any work (their folder exists, they are not an input of the
command), each output is written atomically (complete or absent) and named when written.
Ctrl-C ends with one line saying what was kept (exit status 130).
"""
import argparse
import sys
from contextlib import contextmanager

from sensloc.cli import _demo, _explain, _localize, _weights
from sensloc.cli._common import Parser, UsageError
# Names scripts and tutorials import from here.
from sensloc.cli._explain import attribution_for, heat_scale  # noqa: F401
from sensloc.cli._localize import open_datasets  # noqa: F401


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
    _explain.add_parsers(commands)
    _weights.add_parsers(commands)
    _localize.add_parsers(commands)
    _demo.add_parsers(commands)
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
