"""Write the tutorial notebooks (``tutorials/*.ipynb``) from their sources in ``tutorials/src/``.

The sources are Python files in the "percent" format that Jupytext and most editors read:
a line ``# %% [markdown]`` starts a Markdown cell whose lines are commented with ``# ``, a line
``# %%`` starts a code cell. Edit the sources, then run

    python tutorials/build_notebooks.py

The notebooks are written without outputs (the test suite executes them and checks that they
are in step with their sources: ``tests/test_tutorials.py``).
"""
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3",
                 "codemirror_mode": {"name": "ipython", "version": 3},
                 "file_extension": ".py", "mimetype": "text/x-python"}


def _markdown_line(line, where):
    if line in ("#", ""):
        return ""
    if not line.startswith("# "):
        raise ValueError(f"{where}: a Markdown line must start with '# ', got {line!r}")
    return line[2:]


def parse(text, name="<source>"):
    """Cells ``[(kind, source)]`` of a percent-format file, kind ``"markdown"`` or ``"code"``."""
    cells, kind, lines = [], None, []

    def close():
        if kind is not None:
            body = "\n".join(lines).strip("\n")
            if body:
                cells.append((kind, body))

    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("# %%"):
            close()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(_markdown_line(line, f"{name}, line {number}"))
        elif kind == "code":
            lines.append(line)
        elif line.strip():
            raise ValueError(f"{name}, line {number}: text before the first '# %%' cell marker")
    close()
    return cells


def build(source_path):
    """The notebook (``nbformat.NotebookNode``, no outputs) of one source file."""
    source_path = Path(source_path)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for index, (kind, body) in enumerate(parse(source_path.read_text(encoding="utf-8"), source_path.name)):
        cell = (nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell)(body)
        cell["id"] = f"{source_path.stem[:2]}-{index:03d}"  # stable ids: rebuilding changes nothing
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_path(source_path):
    return HERE / f"{Path(source_path).stem}.ipynb"


def main(argv=None):
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if not sources:
        print(f"no sources in {SOURCES}", file=sys.stderr)
        return 1
    for source in sources:
        target = notebook_path(source)
        nbformat.write(build(source), target)
        print(f"{source.relative_to(HERE)} -> {target.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
