"""The coursework grader (coursework/grade.py) and its sandbox (coursework/sandbox.py).

* the untouched skeletons of ``coursework/assignments`` score zero, part by part;
* the answer keys (``tests/answer_keys``: NumPy written from the equations, no library) score
  full marks, for several seeds of the random cases;
* gamed submissions score zero with a message saying why: the library adapters (which do give
  the right numbers when run in the grader's own process) and a file that disables the grader's
  comparison functions at import (which does disable them in the grader's own process); so do
  attempts to load library files by path, start processes or write outside the sandbox;
* a part that runs too long is stopped, and only that part loses its points;
* typical mistakes are caught by the right part, with a targeted hint (none with ``--no-hints``);
* a crash is reported with the line of the student's file; a file that does not import, or lacks
  a function, is graded zero with a message;
* ``sensloc grade N FOLDER`` writes a CSV and a JSON of per-part scores; a secret seed
  (``--seed`` or ``$SENSLOC_GRADE_SEED``) changes the cases;
* ``python -m sensloc.coursework.grade`` and the ``sensloc grade`` wiring (``add_parser``) work,
  with exit status 0 for full marks, 1 otherwise, 2 for a usage error.
"""
import argparse
import ast
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sensloc.coursework import _sandbox_call, grade

REPO = Path(__file__).resolve().parents[1]
SKELETONS = REPO / "coursework" / "assignments"
KEYS = REPO / "tests" / "answer_keys"
FIXTURES = REPO / "tests" / "grading_fixtures"
FILES = {1: "1_backward_recursion.py", 2: "2_rules.py", 3: "3_box_regression.py", 4: "4_cam_and_khan.py"}


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_process_passes(number, module, seed=0):
    """How many cases the module's functions pass when called in THIS process (the old way)."""
    assignment = grade.ASSIGNMENTS[number]
    passed = total = 0
    for index, part in enumerate(assignment.parts, start=1):
        for case in part.make_cases(np.random.default_rng([seed, number, index])):
            total += 1
            got = getattr(module, part.function)(*_sandbox_call.as_plain_data(case.args))
            try:
                (case.check or grade.default_check)(got, case)
                passed += 1
            except grade.CaseFailure:
                pass
    return passed, total


def part(report, function):
    return next(p for p in report.parts if p.function == function)


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_untouched_skeleton_scores_zero(number):
    report = grade.grade(number, SKELETONS / FILES[number])
    assert report.score == 0 and not report.full_marks and report.error is None
    assert len(report.parts) == len(grade.ASSIGNMENTS[number].parts) >= 5
    for result in report.parts:
        assert result.passed == 0
        assert any("not implemented yet" in m and f"TODO part {result.number}" in m for m in result.messages)
    text = report.format()
    assert f"score: 0.0 / {report.max_score}" in text and text.count("FAIL") == len(report.parts)


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_each_assignment_states_an_estimated_time(number):
    docstring = ast.get_docstring(ast.parse((SKELETONS / FILES[number]).read_text()))
    assert "Estimated time:" in docstring and "hours" in docstring


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_answer_keys_score_full_marks(number, seed):
    report = grade.grade(number, KEYS / FILES[number], seed=seed)
    assert report.full_marks, report.format()
    assert report.score == report.max_score == 15
    assert "full marks" in report.format()


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_answer_keys_use_numpy_only_and_are_not_shipped(number):
    tree = ast.parse((KEYS / FILES[number]).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == ({"numpy", "scipy"} if number == 4 else {"numpy"})  # scipy: the Gaussian
    assert not (SKELETONS / FILES[number]).read_text().count("np.linalg.solve(X1.T")  # the key is not the skeleton
    setup = (REPO / "setup.cfg").read_text()
    assert "tests" not in setup.split("[options.package_data]")[1].split("[")[0]


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_answer_keys_keep_the_skeletons_signatures_and_given_code(number):
    """A key is the skeleton with the TODOs answered: same functions, same given code."""
    def definitions(path):
        text = path.read_text()
        tree = ast.parse(text)
        return {node.name: (ast.dump(node.args) if hasattr(node, "args") else "",
                            ast.get_source_segment(text, node), "NotImplementedError" in ast.get_source_segment(text, node))
                for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    skeleton, key = definitions(SKELETONS / FILES[number]), definitions(KEYS / FILES[number])
    assert set(skeleton) == set(key)
    graded = {p.function for p in grade.ASSIGNMENTS[number].parts}
    for name, (signature, source, todo) in skeleton.items():
        assert key[name][0] == signature, name
        assert todo == (name in graded), name
        if not todo:  # given code (forward, backward, rule classes) is the same in the key
            assert key[name][1] == source, name
        else:
            assert not key[name][2], name


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_library_adapters_score_zero(number):
    path = FIXTURES / f"gamed_{number}_library_adapter.py"
    # Run in this process, as the grader used to, the adapters give every right answer...
    passed, total = in_process_passes(number, load(path, f"gamed_{number}"))
    assert passed == total > 10
    # ...the sandbox refuses the import: zero, and the report says why.
    report = grade.grade(number, path)
    assert report.score == 0 and not report.full_marks
    assert "imports the library (`sensloc" in report.error
    assert all(p.passed == 0 and "scored 0" in p.messages[0] for p in report.parts)
    assert "hint:" not in report.format()


def test_replacing_the_graders_comparisons_scores_zero(monkeypatch):
    path = FIXTURES / "tamper_3_comparisons.py"
    original_arrays, original_scalar = grade.compare_arrays, grade.compare_scalar
    # The grader and the modules of its cases hold the comparisons: restore them all after the test.
    holders = [(m, name) for m in list(sys.modules.values()) if hasattr(m, "compare_arrays")
               for name in ("compare_arrays", "compare_scalar") if hasattr(m, name)]
    assert {m.__name__ for m, _ in holders} >= {grade.__name__, "sensloc.coursework._cases_boxes"}

    def restore():
        for m, name in holders:
            monkeypatch.setattr(m, name, {"compare_arrays": original_arrays,
                                          "compare_scalar": original_scalar}[name])
    restore()
    module = load(path, "tamper_3")
    # In the grader's own process the attack works: the comparisons are gone, every wrong answer passes.
    assert grade.compare_arrays is not original_arrays and grade.compare_scalar is not original_scalar
    assert grade.compare_scalar(0.0, 0.5) is None
    assert in_process_passes(3, module) == in_process_passes(3, load(KEYS / FILES[3], "key_3"))
    restore()
    with pytest.raises(grade.CaseFailure):
        grade.compare_scalar(0.0, 0.5)
    report = grade.grade(3, path)
    assert report.score == 0 and "imports the library (`sensloc.coursework" in report.error
    assert grade.compare_arrays is original_arrays and grade.compare_scalar is original_scalar


def key_with(tmp_path, number, replacements, name=None):
    """The answer key with some code replaced (a student's attempt)."""
    text = (KEYS / FILES[number]).read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / (name or FILES[number])
    path.write_text(text)
    return path


IOU_BODY = "    box_a, box_b = np.asarray(box_a, dtype=float), np.asarray(box_b, dtype=float)\n"


@pytest.mark.parametrize("attempt, expected", [
    ("    import importlib.util, sensloc.localize\n", "imports the library"),
    ("    import importlib.util\n    spec = importlib.util.spec_from_file_location('b', LIBRARY + '/localize/boxes.py')\n"
     "    module = importlib.util.module_from_spec(spec)\n    spec.loader.exec_module(module)\n",
     "opens a file of the library"),
    ("    import sys\n    sys.path.insert(0, LIBRARY + '/localize')\n    import boxes\n",
     "imports a module of the library (`boxes`)"),
    ("    import subprocess, sys\n    subprocess.run([sys.executable, '-c', 'print(1)'])\n",
     "starts or signals a process"),
    ("    open(OUTSIDE, 'w').write('x')\n", "writes outside its folder"),
    ("    import os\n    os.rename(__file__, OUTSIDE)\n", "changes a file outside its folder (os.rename"),
    ("    import os\n    open(f'/proc/{os.getppid()}/mem', 'rb')\n", "opens another process's files"),
    ("    open(LIBRARY + '/tests/answer_keys/3_box_regression.py').read()\n", "opens a file of the library"),
])
def test_escapes_from_the_sandbox_score_zero_for_the_part(tmp_path, attempt, expected):
    if "answer_keys" in attempt and Path(_sandbox_call._library_dirs()[0]) != REPO:
        pytest.skip("the library is not installed from this repository (editable)")
    outside = tmp_path / "written_by_the_submission.txt"
    path = key_with(tmp_path, 3, [(IOU_BODY, attempt + IOU_BODY),
                                  ("import numpy as np\n", f"import numpy as np\nLIBRARY = {str(REPO)!r}\n"
                                                           f"OUTSIDE = {str(outside)!r}\n")])
    report = grade.grade(3, path)
    iou = part(report, "iou")
    assert iou.passed == 0 and any(expected in m and "scored 0" in m for m in iou.messages), iou.messages
    # corloc calls iou: it fails as well; the parts that do not call it keep their points
    assert [p.ok for p in report.parts] == [False, False, True, True, True, True]
    assert not outside.exists()


def test_forged_results_are_refused(tmp_path):
    # The submission writes its own results file and ends the process before the grader's child does.
    path = key_with(tmp_path, 3, [(IOU_BODY, "    import os\n    open(os.path.join(os.path.dirname(__file__), "
                                             "'results.npz'), 'wb').write(b'not an npz')\n    os._exit(0)\n")])
    iou = part(grade.grade(3, path), "iou")
    assert iou.passed == 0 and "left results that could not be read" in iou.messages[0]
    assert grade.grade(3, KEYS / FILES[3]).full_marks


def test_a_part_that_runs_too_long_is_stopped(tmp_path):
    path = key_with(tmp_path, 3, [("    X1 = np.hstack([X, np.ones((len(X), 1))])\n    penalty",
                                   "    while True:\n        pass\n    penalty")])
    report = grade.grade(3, path, limits=grade.Limits(cpu_seconds=2, wall_seconds=30))
    fit = part(report, "fit_ridge")
    assert fit.passed == 0 and "CPU time" in fit.messages[0]
    assert part(report, "iou").ok and part(report, "predict_boxes").ok
    report = grade.grade(3, path, limits=grade.Limits(cpu_seconds=60, wall_seconds=2))
    assert "wall clock" in part(report, "fit_ridge").messages[0]


def test_a_file_that_hangs_at_import_is_stopped_once(tmp_path):
    path = key_with(tmp_path, 3, [("import numpy as np\n", "import numpy as np\nwhile True:\n    pass\n")])
    report = grade.grade(3, path, limits=grade.Limits(cpu_seconds=2, wall_seconds=30))
    assert report.score == 0 and "CPU time while being imported" in report.error
    assert all("hint:" not in m for p in report.parts for m in p.messages)


def test_a_part_that_takes_too_much_memory_fails_alone(tmp_path):
    path = key_with(tmp_path, 3, [("    N, H, W = maps.shape\n", "    N, H, W = maps.shape\n"
                                                                  "    waste = np.ones(10 ** 10)\n")])
    report = grade.grade(3, path, limits=grade.Limits(memory_bytes=1 << 30))
    grid = part(report, "grid_features")
    assert grid.passed == 0 and any("MemoryError" in m for m in grid.messages)
    assert part(report, "fit_ridge").ok


def test_typical_mistakes_of_assignment_1_get_targeted_hints(tmp_path):
    path = key_with(tmp_path, 1, [
        ("    return signal * (eta > 0)", "    return signal * (eta >= 0)"),
        ("dx[a, b, s * r + winner // k, s * q + winner % k] +=", "dx[a, b, s * r + winner // k, s * q + winner % k] ="),
    ])
    report = grade.grade(1, path)
    relu, pool = part(report, "relu_backward"), part(report, "max_pool_backward")
    assert not relu.ok and any("1[eta > 0], not 1[eta >= 0]" in m for m in relu.messages)
    assert not pool.ok and 0 < pool.passed < pool.total  # the cases without overlap pass
    assert any("SUM of those windows' signals" in m for m in pool.messages)
    assert part(report, "conv2d_backward").ok and part(report, "linear_backward").ok
    assert report.score == pytest.approx(15 - relu.points * (1 - relu.passed / relu.total)
                                         - pool.points * (1 - pool.passed / pool.total)
                                         - 3 * (1 - part(report, "input_gradient").passed / 2))
    # an exam: the same mistakes, no hint and no diagnosis
    quiet = grade.grade(1, path, hints=False)
    assert quiet.score == report.score
    text = quiet.format()
    assert "hint:" not in text and "1[eta >= 0]" not in text and "SUM of those" not in text
    assert "is wrong at" in text


def test_typical_mistakes_of_assignment_2_get_targeted_hints(tmp_path):
    path = key_with(tmp_path, 2, [
        ("    return signal * ((eta > 0) & (signal > 0))", "    return signal * (eta > 0)"),
        ("    safe = np.abs(difference) >= eps\n", "    safe = np.ones(difference.shape, bool)\n"),
        ("    return (x - x_ref) * backward(", "    return backward("),
    ])
    report = grade.grade(2, path)
    assert any("gradient's rule" in m for m in part(report, "guided_relu").messages)
    rescale = part(report, "rescale_relu")
    assert not rescale.ok and rescale.passed > 0
    assert any("NaN or infinity" in m and "use the gradient" in m for m in rescale.messages)
    assert any("multipliers m" in m for m in part(report, "deeplift").messages)
    assert part(report, "deconvnet_relu").ok and not part(report, "guided_backprop").ok
    assert any("calls your guided_relu (part 1)" in m for m in part(report, "guided_backprop").messages)


def test_typical_mistakes_of_assignment_3_get_targeted_hints(tmp_path):
    path = key_with(tmp_path, 3, [
        ("    penalty[-1, -1] = 0.0   # the bias is not penalized\n", ""),
        ("max(iou(pred, gt) for gt in np.asarray(boxes).reshape(-1, 4))", "iou(pred, np.asarray(boxes).reshape(-1, 4)[0])"),
    ])
    report = grade.grade(3, path)
    assert any("Do not penalize the bias" in m for m in part(report, "fit_ridge").messages)
    assert any("Any ground-truth box of the image may match" in m for m in part(report, "corloc").messages)
    # choose_lambda calls the broken fit_ridge: the grader says so
    choose = part(report, "choose_lambda")
    assert not choose.ok and any("calls your fit_ridge (part 4)" in m for m in choose.messages)
    assert part(report, "iou").ok and part(report, "grid_features").ok and part(report, "predict_boxes").ok


def test_typical_mistakes_of_assignment_4_get_targeted_hints(tmp_path):
    path = key_with(tmp_path, 4, [
        ("    return np.maximum((alphas * activations).sum(axis=1), 0)", "    return (alphas * activations).sum(axis=1)"),
        ("    return np.minimum(profile(shape[0])[:, None], profile(shape[1])[None, :])",
         "    return profile(shape[0])[:, None] * profile(shape[1])[None, :]"),
        ("    return union_box(np.sqrt(a * b), fraction)", "    return union_box(a * b, fraction)"),
    ])
    report = grade.grade(4, path)
    assert any("Apply the final ReLU" in m for m in part(report, "grad_cam").messages)
    border = part(report, "border_mask")
    assert 0 < border.passed < border.total  # a zero band (all ones) or a zero edge weight... still right
    assert any("MINIMUM of the row and column weights" in m for m in border.messages)
    assert any("calls your border_mask (part 2)" in m for m in part(report, "khan_heat").messages)
    assert part(report, "union_box").ok and not part(report, "khan_boxes").ok


def test_a_crash_is_reported_with_the_students_line(tmp_path):
    path = key_with(tmp_path, 3, [("    N, H, W = maps.shape\n", "    values = list(maps.shape)\n    return values[7]\n")])
    message = " ".join(part(grade.grade(3, path), "grid_features").messages)
    assert "raised IndexError" in message and "line " in message and "return values[7]" in message


def test_a_file_that_does_not_import_scores_zero(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import numpy as np\n\ndef iou(a, b)\n    return 0\n")
    report = grade.grade(3, path)
    assert report.score == 0 and not report.full_marks
    assert "SyntaxError" in report.error and "line 3" in report.error
    assert "ERROR could not import broken.py" in report.format()


def test_a_missing_function_is_named(tmp_path):
    path = key_with(tmp_path, 2, [("def deconvnet_relu(", "def deconv_relu(")], name="partial.py")
    report = grade.grade(2, path)
    assert any("has no function `deconvnet_relu`" in m for m in part(report, "deconvnet_relu").messages)
    assert report.score == 13


def test_the_same_seed_gives_the_same_cases(tmp_path):
    path = key_with(tmp_path, 1, [("    return signal * (eta > 0)", "    return signal * (eta >= 0)")])
    first, again, other = (grade.grade(1, path, seed=s).format() for s in (5, 5, 6))
    assert first == again and first != other


def test_grading_a_folder_writes_csv_and_json(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "alice.py").write_text((KEYS / FILES[3]).read_text())
    (folder / "bob.py").write_text((SKELETONS / FILES[3]).read_text())
    (folder / "carol.py").write_text((FIXTURES / "gamed_3_library_adapter.py").read_text())
    key_with(folder, 3, [("    penalty[-1, -1] = 0.0   # the bias is not penalized\n", "")], name="dave.py")
    monkeypatch.setenv(grade.SEED_VARIABLE, "123456")  # the teacher's secret seed
    assert grade.main(["3", str(folder), "--no-hints"]) == 1
    out = capsys.readouterr().out
    assert "alice.py: 15.0 / 15" in out and "bob.py: 0.0 / 15" in out
    with open(folder / "grades_3.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["file"] for r in rows] == ["alice.py", "bob.py", "carol.py", "dave.py"]
    assert [float(r["total"]) for r in rows[:3]] == [15.0, 0.0, 0.0]
    assert rows[3]["part4_fit_ridge"] != "3.00" and float(rows[3]["part1_iou"]) == 2.0
    assert "imports the library" in rows[2]["error"]
    data = json.loads((folder / "grades_3.json").read_text())
    assert data["seed"] == 123456 and len(data["submissions"]) == 4
    dave = data["submissions"][3]
    assert dave["file"] == "dave.py" and [p["function"] for p in dave["parts"]][3] == "fit_ridge"
    assert dave["parts"][3]["passed"] < dave["parts"][3]["cases"] == 4
    assert not any("penalize" in m for p in dave["parts"] for m in p["messages"])  # --no-hints
    # the secret seed is the one used: --seed 123456 gives the same table
    assert grade.main(["3", str(folder), "--no-hints", "--seed", "123456", "--out", str(tmp_path / "again")]) == 1
    assert (tmp_path / "again.csv").read_text() == (folder / "grades_3.csv").read_text()
    assert grade.main(["3", str(folder), "--seed", "1", "--out", str(tmp_path / "other")]) == 1
    other = json.loads((tmp_path / "other.json").read_text())["submissions"][3]["parts"][3]["messages"]
    assert other != dave["parts"][3]["messages"]  # another seed, other cases


def test_default_file_is_the_skeleton(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not in the repository: falls back to the repository's skeleton
    assert grade.default_file(grade.find_assignment("rules")) == SKELETONS / "2_rules.py"
    assert grade.find_assignment("3").key == "boxes"
    assert grade.find_assignment("1_backward_recursion.py").number == 1
    with pytest.raises(ValueError, match="unknown assignment"):
        grade.find_assignment("7")


def test_main_exit_status_and_report(capsys, monkeypatch):
    monkeypatch.delenv(grade.SEED_VARIABLE, raising=False)
    assert grade.main(["1", str(KEYS / FILES[1])]) == 0
    assert "full marks" in capsys.readouterr().out
    assert grade.main(["rules", str(SKELETONS / FILES[2])]) == 1
    assert "not implemented yet" in capsys.readouterr().out
    assert grade.main(["3", "no/such/file.py"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert grade.main(["9"]) == 2
    assert "unknown assignment" in capsys.readouterr().err
    monkeypatch.setenv(grade.SEED_VARIABLE, "seven")
    assert grade.main(["3", str(KEYS / FILES[3])]) == 2
    assert "must be an integer" in capsys.readouterr().err


def test_sub_command_wiring(capsys):
    """What cli/main.py registers: ``grade.add_parser(commands)`` sets ``run``."""
    parser = argparse.ArgumentParser(prog="sensloc")
    commands = parser.add_subparsers(dest="command", required=True)
    grade.add_parser(commands)
    args = parser.parse_args(["grade", "3", str(KEYS / FILES[3]), "--seed", "4"])
    assert args.run(args) == 0
    assert "seed: 4" in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "sensloc.coursework.grade", "boxes", str(KEYS / FILES[3])],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Assignment 3" in done.stdout and "score: 15.0 / 15" in done.stdout
