"""The shape of the package: one import root, data flowing one way, no import circles.

Every ``import`` statement of the library (at module level or inside a function) is read with
:mod:`ast`, so these checks see the imports that run late as well as those that run at once.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The subpackages (and private modules) of sensloc, as folders or files of the repository root.
SUBPACKAGES = ("_files", "cli", "coursework", "data", "evaluation", "localize", "nets", "saliency",
               "training", "weights")
#: What each subpackage may import from the others: data flows image -> nets -> saliency ->
#: localize -> evaluation, and the command line, coursework and training sit on top.
ALLOWED = {
    "_files": set(),
    "nets": set(),
    "data": {"_files"},
    "saliency": {"nets"},
    "localize": {"nets", "saliency"},
    "weights": {"nets", "data", "_files"},
    "evaluation": {"nets", "saliency", "localize", "weights", "data", "_files"},
    "training": {"nets", "saliency", "localize", "weights", "data", "evaluation", "_files"},
    "coursework": {"nets", "saliency", "localize", "weights", "data", "_files"},
    "__main__": {"cli"},
    "cli": {"nets", "saliency", "localize", "weights", "data", "evaluation", "training",
            "coursework", "_files"},
}


def library_files():
    for name in SUBPACKAGES:
        path = REPO / name
        yield from ([path.with_suffix(".py")] if not path.is_dir() else sorted(path.rglob("*.py")))
    yield REPO / "__init__.py"
    yield REPO / "__main__.py"


def module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["sensloc"] + parts)


def imports_of(path):
    """Absolute names ``a.b`` of what ``path`` imports (``import a.b``, ``from a import b``); the
    graph below reads ``a.b`` as the module ``a.b`` if there is one, else as a name from ``a``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "sensloc" or m.startswith("sensloc.")}


@pytest.fixture(scope="module")
def graph():
    modules = {module_name(p): p for p in library_files()}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            # the module itself if it is one, else its package (a name imported from it)
            while imported not in modules and "." in imported:
                imported = imported.rpartition(".")[0]
            if imported in modules and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def subpackage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_subpackage_imports_only_what_lies_below_it(graph):
    wrong = sorted(f"{source} imports {target}" for source, targets in graph.items()
                   for target in targets
                   if subpackage(source) and subpackage(target)
                   and subpackage(target) != subpackage(source)
                   and subpackage(target) not in ALLOWED[subpackage(source)])
    assert not wrong, "\n".join(wrong)


def test_no_import_circles(graph):
    state, circles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, "\n".join(circles)


def test_no_generic_top_level_packages_are_installed():
    """The distribution installs ``sensloc`` only (peers named ``saliency`` or ``nets`` exist)."""
    text = (REPO / "setup.cfg").read_text()
    packages = text.split("packages =", 1)[1].split("install_requires", 1)[0].split()
    assert packages and all(p == "sensloc" or p.startswith("sensloc.") for p in packages)
    listed = {p.split(".")[1] for p in packages if "." in p}
    on_disk = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()} - {"benchmarks"}
    assert listed == on_disk, "every package folder of the repository is a listed subpackage"


def test_sensloc_imports_from_anywhere():
    """The installed package is found outside the repository (not through the working folder)."""
    done = subprocess.run([sys.executable, "-c", "import sensloc.localize.protocols, sensloc.cli; "
                           "import sensloc; print(sensloc.__file__)"],
                          cwd="/", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_index_saliency_package_and_ours_import_side_by_side():
    """PAIR's framework-agnostic ``saliency`` (a peer our users install) and ``sensloc.saliency``
    are different packages in one process. Run outside the repository: inside it, its own
    top-level folders shadow installed packages of the same name."""
    done = subprocess.run([sys.executable, "-c",
                           "import importlib.util as u, sys\n"
                           "if u.find_spec('saliency') is None: print('absent'); sys.exit()\n"
                           "import saliency, saliency.core, sensloc.saliency as ours\n"
                           "assert ours is not saliency and hasattr(ours, 'Guided')\n"
                           "assert hasattr(saliency.core, 'GradientSaliency'); print('both')"],
                          cwd="/", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "absent":
        pytest.skip("the saliency distribution from the index is not installed (test extra)")
    assert done.stdout.strip() == "both"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A real wheel of the repository (not editable), unpacked."""
    import zipfile
    folder = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(folder), str(REPO)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"building the wheel failed: {done.stderr[-2000:]}")
    (built,) = folder.glob("sensloc-*.whl")
    unpacked = folder / "site"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(unpacked)
    return unpacked


def test_the_wheel_holds_sensloc_only_with_its_data(wheel):
    top = {p.name for p in wheel.iterdir() if not p.name.endswith(".dist-info")}
    assert top == {"sensloc"}
    for needed in ("weights/data/vgg_small.h5", "weights/data/imagenet_classes.txt",
                   "coursework/assignments/1_backward_recursion.py", "cli/main.py",
                   "localize/protocols/__init__.py", "__main__.py"):
        assert (wheel / "sensloc" / needed).is_file(), needed
    assert not (wheel / "sensloc" / "tests").exists()


def test_grading_works_from_the_wheel(wheel, tmp_path):
    """``sensloc grade 1`` without FILE finds the skeleton shipped inside the package (it scores
    nothing: the skeleton is not implemented) in a folder that is not the repository."""
    env = {**__import__("os").environ, "PYTHONPATH": str(wheel)}
    done = subprocess.run([sys.executable, "-c", "import sensloc, sys; print(sensloc.__file__); "
                           "from sensloc.cli import main; sys.exit(main(['grade', '1']))"],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.stdout.splitlines()[0] == str(wheel / "sensloc" / "__init__.py")
    assert "1_backward_recursion.py" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr
