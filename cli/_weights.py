"""``sensloc weights list | fetch | convert``: the installed weights."""
import sys
import warnings

from sensloc.cli._common import output_path


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


def add_parsers(commands):
    """Register ``weights`` (list, fetch, convert) on the sub-command parsers of ``sensloc``."""
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
