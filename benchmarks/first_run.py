"""First run after installing: ``sensloc explain`` (SqueezeNet gradient of a photo) and
``sensloc demo``, each in a fresh environment, then a second time in the same one.

    python benchmarks/first_run.py [--photo P] [--squeezenet compressed_SqueezeNet.net]

For every (command, backend) pair the script builds a fresh environment of its own:

- a new virtual environment (``python -m venv --without-pip``) whose only link to this one is a
  ``.pth`` file naming this interpreter's site-packages, so NumPy, Numba, SciPy and matplotlib
  are found as a user's ``pip install`` would leave them (byte-compiled) - but not sensloc;
- a copy of the repository's source (the working tree, without ``__pycache__``) as the package
  ``sensloc``, so no byte code of the project exists yet (pip would compile it at install; here
  the first run pays for it, slightly against us);
- an empty ``NUMBA_CACHE_DIR`` and an empty ``HOME`` cache.

It then runs the command twice, each in a new process, and reports the wall time from spawn to
exit (the map or figure is written just before exit, so this bounds the time until it appears).
``--backend auto`` is what ``sensloc`` does by default (``cli.main.command_backend``: NumPy for
this small work); ``--backend numba`` is what it did before (compile on first use). The PyTorch
side is not involved. Weights: SqueezeNet 1.0 converted from the shared Deep Compression file
(converted once, in this environment, before any timing); the photo: a shared ImageNet photo.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SENSLOC_SHARED", ROOT.parent / "shared"))
PHOTO = SHARED / "data/imagenet-val-227/images/ILSVRC2012_val_00000363.JPEG"
SQUEEZENET = SHARED / "weights/squeezenet-1.0-dc/compressed_SqueezeNet.net"
#: Variables a user's machine does not have (a development pin of OpenBLAS, a shared cache).
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY", "NUMBA_CACHE_DIR",
         "PYTHONPATH", "VIRTUAL_ENV")


def fresh_environment(where):
    """A new venv that sees this interpreter's third-party packages and a fresh copy of sensloc."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    source = where / "src"
    shutil.copytree(ROOT, source / "sensloc",
                    ignore=shutil.ignore_patterns("__pycache__", ".git", "*.pyc", "results",
                                                  "*.egg-info", ".pytest_cache", "build"))
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.stdout.strip()) / "fresh_env.pth").write_text(
        "\n".join([str(source)] + sorted(ours)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(NUMBA_CACHE_DIR=str(where / "numba-cache"), HOME=str(where / "home"),
               XDG_CACHE_HOME=str(where / "home" / ".cache"), MPLCONFIGDIR=str(where / "mpl"))
    (where / "home").mkdir()
    return python, env


def timed_run(python, env, argv, cwd):
    start = time.monotonic()
    proc = subprocess.run([str(python), "-m", "sensloc"] + argv, env=env, cwd=cwd,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"sensloc {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photo", default=str(PHOTO))
    p.add_argument("--squeezenet", default=str(SQUEEZENET),
                   help="SqueezeNet 1.0 weights in any format 'sensloc weights convert' reads")
    p.add_argument("--commands", default="explain,demo")
    p.add_argument("--backends", default="auto,numba")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    for path in (args.photo, args.squeezenet):
        if not Path(path).exists():
            sys.exit(f"missing {path}: give --photo / --squeezenet, or set SENSLOC_SHARED")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sensloc-first-run-") as tmp:
        tmp = Path(tmp)
        weights = tmp / "squeezenet1_0.h5"
        subprocess.run([sys.executable, "-m", "sensloc", "weights", "convert", args.squeezenet,
                        "--out", str(weights)], check=True, capture_output=True, cwd=tmp)
        commands = {"explain": ["explain", "--net", "squeezenet1_0", "--weights", str(weights),
                                args.photo, "--out", "heat.png"],
                    "demo": ["demo", "--out", "demo.png"]}
        for command in args.commands.split(","):
            for backend in args.backends.split(","):
                where = tmp / f"{command}-{backend}"
                where.mkdir()
                python, env = fresh_environment(where)
                argv = ["--backend", backend] + commands[command]
                first = timed_run(python, env, argv, where)
                second = timed_run(python, env, argv, where)
                cache = where / "numba-cache"
                files = sum(len(f) for _, _, f in os.walk(cache)) if cache.exists() else 0
                row = {"command": command, "backend": backend, "first_s": round(first, 2),
                       "second_s": round(second, 2), "numba_cache_files": files,
                       "loadavg": " ".join(f"{v:.1f}" for v in os.getloadavg())}
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(where)
    print("\n| command | --backend | first run (s) | second run (s) | Numba cache files |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['command']} | {r['backend']} | {r['first_s']:.1f} | {r['second_s']:.1f} "
              f"| {r['numba_cache_files']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
