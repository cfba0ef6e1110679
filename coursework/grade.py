"""Grading the coursework of ``sensloc/coursework/assignments`` against the library's own implementation.

    sensloc grade ASSIGNMENT [FILE | FOLDER] [--seed S] [--no-hints] [--out PREFIX]
    python -m sensloc.coursework.grade ASSIGNMENT [FILE | FOLDER] [--seed S] [--no-hints]

``ASSIGNMENT`` is ``1`` to ``4`` (or ``backward``, ``rules``, ``boxes``, ``cam``):

1. ``1_backward_recursion.py``: Eq. 1, ``s_i = g'(eta_i) * sum_k w_ki s_k``, for fully connected,
   ReLU, convolution and max-pool layers, then through a whole network (reference: :mod:`nets`,
   :func:`saliency.gradient`);
2. ``2_rules.py``: the guided, deconvnet and DeepLIFT rescale rules, and guided backpropagation
   and DeepLIFT built from them (reference: :mod:`saliency.rules`, :mod:`saliency.methods`);
3. ``3_box_regression.py``: IoU, CorLoc, grid features, closed-form ridge regression, box
   prediction and cross-validation (reference: :mod:`sensloc.localize.boxes`, :mod:`sensloc.localize.metrics`,
   :mod:`sensloc.localize.regression`);
4. ``4_cam_and_khan.py``: Grad-CAM from activations and gradients, and Khan et al.'s recipe
   (border mask, one map's recipe, union box, two maps mixed by their geometric mean)
   (reference: :func:`saliency.grad_cam`, :mod:`saliency.postprocess`,
   :func:`sensloc.localize.protocols.khan_heat`, :func:`sensloc.localize.boxes.boxes_from_heatmap`).

``FILE`` is the student's module (by default the skeleton in ``sensloc/coursework/assignments``).
It is never imported into the grading process: every part runs in its own child process
(:mod:`sensloc.coursework.sandbox`: ``python -I``, memory, CPU and wall-clock limits) that cannot
import or read the library, start processes or write outside a temporary folder. The cases go
to the child as plain data (networks as lists of layer dicts, :func:`plain_network`) and the
results come back as plain data (``.npz``, never unpickled); the expected values are computed
and compared here, out of the submission's reach. A submission that tries to use the library
scores 0 for the parts affected, with the reason.

Every function is called on randomized cases (seeded by ``--seed``, else ``$SENSLOC_GRADE_SEED``,
else 0: a teacher's secret seed gives hidden cases). A part scores ``points * (cases passed) /
(cases)``; every failed case is reported with what was wrong (shape, values and where, an
exception and the line of the student's file that raised it) and, unless ``--no-hints``, a hint.
A ``FOLDER`` grades every ``*.py`` in it and writes a CSV and a JSON of per-part scores.

Exit status: 0 for full marks (every file), 1 otherwise, 2 when ``FILE`` cannot be found.

The code: this module runs the parts and reports (:func:`grade`, the
tables, the command line); ``_sandbox_call`` sends a part's cases to the sandboxed child and
reads its results back; ``_checks`` holds what a part is made of (cases, the comparisons,
random networks) and ``_cases_backward``, ``_cases_rules``, ``_cases_boxes`` and ``_cases_cam``
the randomized cases of the four assignments, one module each.
"""
import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ``Limits`` is re-exported: ``grade(..., limits=grade.Limits(...))``.
from sensloc.coursework._sandbox_call import Limits, as_plain_data, run_sandboxed  # noqa: F401
# The cases of each assignment, and what they are made of (re-exported: the names tests and
# teachers' scripts use, ``grade.compare_arrays``, ``grade.CaseFailure``, ...).
from sensloc.coursework._cases_backward import ASSIGNMENT_1
from sensloc.coursework._cases_boxes import ASSIGNMENT_3
from sensloc.coursework._cases_cam import ASSIGNMENT_4
from sensloc.coursework._cases_rules import ASSIGNMENT_2
from sensloc.coursework._checks import (Assignment, Case, CaseFailure, Part,  # noqa: F401
                                        compare_arrays, compare_scalar, default_check)

#: The assignment skeletons, shipped with the package.
SKELETONS = Path(__file__).resolve().parent / "assignments"
#: How many failed cases are described per part (the rest are counted).
SHOWN_FAILURES = 3
#: Every assignment by number.
ASSIGNMENTS = {a.number: a for a in (ASSIGNMENT_1, ASSIGNMENT_2, ASSIGNMENT_3, ASSIGNMENT_4)}


@dataclass
class PartResult:
    number: int
    function: str
    points: int
    passed: int
    total: int
    messages: list = field(default_factory=list)
    hint: str = ""

    @property
    def score(self):
        return self.points * self.passed / self.total if self.total else 0.0

    @property
    def ok(self):
        return self.total > 0 and self.passed == self.total


@dataclass
class Report:
    """The result of grading one file."""
    assignment: Assignment
    path: Path
    seed: int
    parts: list
    error: str = None

    @property
    def score(self):
        return sum(p.score for p in self.parts)

    @property
    def max_score(self):
        return sum(p.points for p in self.assignment.parts)

    @property
    def full_marks(self):
        return self.error is None and all(p.ok for p in self.parts)

    def format(self):
        """The report as text, one block per part."""
        a = self.assignment
        lines = [f"Assignment {a.number}: {a.title}", f"file: {self.path}   seed: {self.seed}", ""]
        if self.error:
            lines += [f"  ERROR {self.error}", ""]
        width = max(len(p.function) for p in a.parts)
        for result in self.parts:
            status = "PASS" if result.ok else "FAIL"
            lines.append(f"  part {result.number}  {result.function:<{width}}  {result.score:4.1f} / "
                         f"{result.points}  {status}  ({result.passed}/{result.total} cases)")
            for message in result.messages:
                lines.append(f"          - {message}")
            if not result.ok and result.hint:
                lines.append(f"          hint: {result.hint}")
        lines += ["", f"score: {self.score:.1f} / {self.max_score}"
                  + ("   full marks!" if self.full_marks else "")]
        return "\n".join(lines)


def run_part(number, part, source, path, rng, hints=True, limits=None):
    """Grade one function: run every case in the sandbox, compare here, describe the failures."""
    cases = part.make_cases(rng)
    result = PartResult(number, part.function, part.points, 0, len(cases), hint=part.hint if hints else "")
    results, failure = run_sandboxed(source, part.function, [as_plain_data(c.args) for c in cases], limits)
    if results is None:
        result.messages.append(f"scored 0: your file {failure}")
        return result, ("limit" if "while being imported" in failure else None)
    if results["violations"]:
        what = "; ".join(dict.fromkeys(results["violations"]))
        result.messages.append(f"scored 0: your file {what}. Submissions may use NumPy and the standard "
                               "library only; the grader runs them apart from the library.")
        result.hint = ""
        return result, ("violation" if results["import_error"] or results["import_violations"] else None)
    if results["import_error"]:
        error = results["import_error"]
        message = f"could not import {path.name}: {error['type']}: {error['message']}{error['where']}"
        result.messages.append(message)
        return result, message
    if results["missing"]:
        result.messages.append(f"{path.name} has no function `{part.function}` (keep the names of the skeleton)")
        return result, None
    failures = []
    for case, outcome in zip(cases, results["cases"]):
        if "not_implemented" in outcome:
            result.messages = [f"not implemented yet ({outcome['not_implemented']}): replace the "
                               "`raise NotImplementedError` by your code"]
            result.hint = ""
            return result, None
        if "error" in outcome:
            error = outcome["error"]
            failures.append(f"case {case.label}: raised {error['type']}: {error['message']}{error['where']}")
            continue
        got = outcome["result"]
        try:
            (case.check or default_check)(got, case)
        except CaseFailure as failure:
            message = f"case {case.label}: {failure}"
            hint = _diagnose(case, got) if hints else None
            failures.append(f"{message}. {hint}" if hint else message)
        except Exception as error:  # a result so odd that it cannot even be compared
            failures.append(f"case {case.label}: the result ({type(got).__name__}) cannot be compared "
                            f"with the expected one ({type(error).__name__}: {error})")
        else:
            result.passed += 1
    if len(failures) > SHOWN_FAILURES:
        failures = failures[:SHOWN_FAILURES] + [f"... and {len(failures) - SHOWN_FAILURES} more failed case(s)"]
    result.messages = failures
    return result, None


def _diagnose(case, got):
    """The hint of a case's diagnosis, or None (a diagnosis never breaks the grading)."""
    if case.diagnose is None:
        return None
    try:
        with np.errstate(all="ignore"):
            return case.diagnose(got, case)
    except Exception:
        return None


# ------------------------------------------------------------------------------------ grading

def find_assignment(name):
    """The :class:`Assignment` named by number (``"1"``), key (``"rules"``) or file name."""
    text = str(name).strip().lower()
    for assignment in ASSIGNMENTS.values():
        if text in (str(assignment.number), assignment.key, assignment.filename,
                    assignment.filename[:-3]):
            return assignment
    known = ", ".join(f"{a.number} ({a.key})" for a in ASSIGNMENTS.values())
    raise ValueError(f"unknown assignment {name!r}; known: {known}")


def default_file(assignment):
    """The student's ``<file>`` in the current folder, else the skeleton shipped with the package."""
    for candidate in (Path.cwd() / assignment.filename, SKELETONS / assignment.filename):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no FILE given and {assignment.filename} is neither in the current "
                            f"folder nor in {SKELETONS}; give the path of your solution")


#: The environment variable holding a teacher's secret seed (hidden cases), used when ``--seed`` is not given.
SEED_VARIABLE = "SENSLOC_GRADE_SEED"


def grade(assignment, path=None, seed=0, hints=True, limits=None):
    """Grade a student's file, every part in its own sandboxed process (:mod:`.sandbox`).

    Parameters
    ----------
    assignment : int, str or Assignment
        ``1`` to ``4`` or ``"backward"``, ``"rules"``, ``"boxes"``, ``"cam"``.
    path : path, optional
        The student's module (default :func:`default_file`). It is never imported here: its
        source runs in a child process that cannot import the library (see :mod:`.sandbox`).
    seed : int
        Seeds the random cases; the same seed gives the same cases.
    hints : bool
        Add the part's hint and the diagnosis of typical mistakes to the messages (turn off
        for exams).
    limits : Limits, optional
        Memory, CPU and wall-clock limits of each part's process.

    Returns
    -------
    Report

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    if not isinstance(assignment, Assignment):
        assignment = find_assignment(assignment)
    path = Path(path) if path is not None else default_file(assignment)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    source = path.read_bytes().decode("utf-8", "replace")
    results = []
    for number, part in enumerate(assignment.parts, start=1):
        # Each part draws from its own stream: fixing one part never changes another's cases.
        rng = np.random.default_rng([seed, assignment.number, number])
        result, import_error = run_part(number, part, source, path, rng, hints, limits)
        if import_error:  # the file does not import (or imports the library): every part fails alike
            hint = hints and import_error not in ("violation", "limit")
            parts = [PartResult(i, p.function, p.points, 0, 1, list(result.messages), p.hint if hint else "")
                     for i, p in enumerate(assignment.parts, start=1)]
            return Report(assignment, path, seed, parts, error=result.messages[0])
        broken = [r for r in results if r.function in part.uses and not r.ok]
        started = not any(m.startswith("not implemented yet") for m in result.messages)
        if broken and started and not result.ok and result.passed < result.total:
            names = ", ".join(f"{r.function} (part {r.number})" for r in broken)
            result.messages.append(f"note: this part calls your {names}, which fail(s) its own "
                                   "cases: make that pass first")
        results.append(result)
    return Report(assignment, path, seed, results)


def grade_folder(assignment, folder, seed=0, hints=True, limits=None):
    """Grade every ``*.py`` file of ``folder`` (one submission each), in name order; a list of Reports."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.py") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder}: no submissions (*.py files) in this folder")
    return [grade(assignment, path, seed, hints, limits) for path in files]


def write_tables(reports, prefix):
    """Write ``PREFIX.csv`` (one row per submission, one column per part) and ``PREFIX.json``.

    The JSON holds, per submission, the file, the score, the error if any, and every part's points,
    score, cases passed and messages. Returns the two paths.
    """
    prefix = Path(prefix)
    parts = reports[0].assignment.parts
    header = ["file"] + [f"part{i}_{p.function}" for i, p in enumerate(parts, start=1)] + ["total", "max", "error"]
    rows, records = [], []
    for report in reports:
        rows.append([report.path.name] + [f"{r.score:.2f}" for r in report.parts]
                    + [f"{report.score:.2f}", report.max_score, report.error or ""])
        records.append({"file": report.path.name, "score": round(report.score, 4), "max": report.max_score,
                        "error": report.error,
                        "parts": [{"part": r.number, "function": r.function, "points": r.points,
                                   "score": round(r.score, 4), "passed": r.passed, "cases": r.total,
                                   "messages": r.messages} for r in report.parts]})
    csv_path, json_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".json")
    with open(csv_path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    a = reports[0].assignment
    json_path.write_text(json.dumps({"assignment": a.number, "title": a.title, "seed": reports[0].seed,
                                     "submissions": records}, indent=1), encoding="utf-8")
    return csv_path, json_path


def build_parser(parser=None):
    """The arguments of ``sensloc grade`` (on ``parser`` if given, e.g. a sub-command's parser)."""
    parser = parser or argparse.ArgumentParser(prog="sensloc grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", metavar="ASSIGNMENT",
                        help="1 (backward), 2 (rules), 3 (boxes) or 4 (cam)")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="your solution (default: FILE in the current folder, else the shipped skeleton), "
                             "or a FOLDER of submissions: grade them all and write a CSV and a JSON of scores")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"seed of the random cases (default: ${SEED_VARIABLE} if set, else 0); "
                             "a teacher's secret seed gives cases the students have not seen")
    parser.add_argument("--no-hints", dest="hints", action="store_false",
                        help="report what is wrong but no hint nor diagnosis (exams)")
    parser.add_argument("--out", metavar="PREFIX",
                        help="for a FOLDER: write PREFIX.csv and PREFIX.json (default FOLDER/grades_ASSIGNMENT)")
    return parser


def _seed(args):
    if args.seed is not None:
        return args.seed
    text = os.environ.get(SEED_VARIABLE, "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${SEED_VARIABLE} must be an integer; got {text!r}") from None


def run(args):
    """Grade from parsed arguments, print the report(s); the exit status (0 full marks, 1 otherwise)."""
    seed = _seed(args)
    if args.file is not None and Path(args.file).is_dir():
        assignment = find_assignment(args.assignment)
        reports = grade_folder(assignment, args.file, seed, args.hints)
        prefix = Path(args.out) if args.out else Path(args.file) / f"grades_{assignment.number}"
        for report in reports:
            print(f"{report.path.name}: {report.score:.1f} / {report.max_score}"
                  + (f"   ({report.error})" if report.error else ""))
        csv_path, json_path = write_tables(reports, prefix)
        print(f"wrote {csv_path} and {json_path}")
        return 0 if all(r.full_marks for r in reports) else 1
    report = grade(args.assignment, args.file, seed, args.hints)
    print(report.format())
    return 0 if report.full_marks else 1


def add_parser(commands):
    """Register ``grade`` on the sub-command parsers of ``sensloc`` (see :mod:`sensloc.cli.main`)."""
    parser = commands.add_parser("grade", help="grade a coursework assignment (coursework/assignments)",
                                 description=__doc__.split("\n\n")[0])
    build_parser(parser)
    parser.set_defaults(run=run)
    return parser


def main(argv=None):
    """``python -m sensloc.coursework.grade ASSIGNMENT [FILE | FOLDER] [--seed S] [--no-hints]``; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as error:
        print(f"sensloc grade: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
