"""The coursework grader (localize/grade.py).

* the untouched skeletons of ``coursework/assignments`` score zero, part by part;
* the library's own implementation (``tests/solutions``, thin adapters) scores full marks, for
  several seeds of the random cases;
* typical mistakes are caught by the right part, with a targeted hint, and leave the other parts'
  points alone;
* a crash is reported with the line of the student's file; a file that does not import, or lacks
  a function, is graded zero with a message;
* ``python -m sensloc.coursework.grade`` and the ``sensloc grade`` sub-command wiring (``add_parser``) work,
  with exit status 0 for full marks, 1 otherwise, 2 for a usage error.
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensloc.coursework import grade

REPO = Path(__file__).resolve().parents[1]
SKELETONS = REPO / "coursework" / "assignments"
SOLUTIONS = REPO / "tests" / "solutions"
FILES = {1: "1_backward_recursion.py", 2: "2_rules.py", 3: "3_box_regression.py"}


@pytest.mark.parametrize("number", [1, 2, 3])
def test_untouched_skeleton_scores_zero(number):
    report = grade.grade(number, SKELETONS / FILES[number])
    assert report.score == 0 and not report.full_marks and report.error is None
    assert len(report.parts) == len(grade.ASSIGNMENTS[number].parts) >= 5
    for part in report.parts:
        assert part.passed == 0
        assert any("not implemented yet" in m and f"TODO part {part.number}" in m for m in part.messages)
    text = report.format()
    assert f"score: 0.0 / {report.max_score}" in text and text.count("FAIL") == len(report.parts)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("number", [1, 2, 3])
def test_library_implementation_scores_full_marks(number, seed):
    report = grade.grade(number, SOLUTIONS / FILES[number], seed=seed)
    assert report.full_marks, report.format()
    assert report.score == report.max_score == 15
    assert "full marks" in report.format()


def test_default_file_is_the_skeleton(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not in the repository: falls back to the repository's skeleton
    assert grade.default_file(grade.find_assignment("rules")) == SKELETONS / "2_rules.py"
    assert grade.find_assignment("3").key == "boxes"
    assert grade.find_assignment("1_backward_recursion.py").number == 1
    with pytest.raises(ValueError, match="unknown assignment"):
        grade.find_assignment("7")


def student_file(tmp_path, number, replacements):
    """The library's answer to an assignment with some functions replaced (a student's attempt)."""
    text = (SOLUTIONS / FILES[number]).read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / FILES[number]
    path.write_text(text)
    return path


def part(report, function):
    return next(p for p in report.parts if p.function == function)


def test_typical_mistakes_of_assignment_1_get_targeted_hints(tmp_path):
    path = student_file(tmp_path, 1, [
        ('    return nets.ReLU("relu").backward(signal, eta)', "    return signal * (eta >= 0)"),
        ("    pool = nets.MaxPool2d(\"pool\", kernel_size, stride)\n    _, cache = pool.forward(x)\n"
         "    return pool.backward(signal, cache)",
         "    import numpy as np\n    dx = np.zeros_like(x)\n    n, c, oh, ow = signal.shape\n"
         "    k, s = kernel_size, stride\n"
         "    for a in range(n):\n        for b in range(c):\n            for r in range(oh):\n"
         "                for q in range(ow):\n"
         "                    win = x[a, b, s * r:s * r + k, s * q:s * q + k]\n"
         "                    i = np.argmax(win)\n"
         "                    dx[a, b, s * r + i // win.shape[1], s * q + i % win.shape[1]] = signal[a, b, r, q]\n"
         "    return dx"),
    ])
    report = grade.grade(1, path)
    relu, pool = part(report, "relu_backward"), part(report, "max_pool_backward")
    assert not relu.ok and any("1[eta > 0], not 1[eta >= 0]" in m for m in relu.messages)
    assert not pool.ok and 0 < pool.passed < pool.total  # the cases without overlap pass
    assert any("SUM of those windows' signals" in m for m in pool.messages)
    assert part(report, "conv2d_backward").ok and part(report, "linear_backward").ok
    assert report.score == pytest.approx(15 - relu.points * (1 - relu.passed / relu.total)
                                         - pool.points * (1 - pool.passed / pool.total))


def test_typical_mistakes_of_assignment_2_get_targeted_hints(tmp_path):
    path = student_file(tmp_path, 2, [
        ("    return saliency.Guided().relu(signal, eta, None)", "    return signal * (eta > 0)"),
        ("    return saliency.Rescale(eps=eps).relu(signal, eta, eta_ref)",
         "    import numpy as np\n"
         "    return signal * (np.maximum(eta, 0) - np.maximum(eta_ref, 0)) / (eta - eta_ref)"),
        ("    return saliency.deeplift(net, x, target, reference=x_ref)",
         "    import numpy as np\n    contributions = saliency.deeplift(net, x, target, reference=x_ref)\n"
         "    return contributions / np.where(x == x_ref, 1, x - x_ref)"),
    ])
    report = grade.grade(2, path)
    assert any("gradient's rule" in m for m in part(report, "guided_relu").messages)
    rescale = part(report, "rescale_relu")
    assert not rescale.ok and rescale.passed > 0
    assert any("NaN or infinity" in m and "use the gradient" in m for m in rescale.messages)
    assert any("multipliers m" in m for m in part(report, "deeplift").messages)
    assert part(report, "deconvnet_relu").ok and part(report, "guided_backprop").ok


def test_typical_mistakes_of_assignment_3_get_targeted_hints(tmp_path):
    path = student_file(tmp_path, 3, [
        ("    return regression.fit_ridge(X, Y, lam)",
         "    import numpy as np\n    X1 = np.hstack([X, np.ones((len(X), 1))])\n"
         "    return np.linalg.solve(X1.T @ X1 + lam * np.eye(X1.shape[1]), X1.T @ Y)"),
        ("    return metrics.corloc(pred_boxes, gt_boxes, threshold)",
         "    import numpy as np\n"
         "    return float(np.mean([iou(p, g[0]) >= threshold for p, g in zip(pred_boxes, gt_boxes)]))"),
        ('    return regression.choose_lambda_cv(X, Y, lambdas, k, seed, score="mse")',
         "    import numpy as np\n"
         "    folds = np.array_split(np.random.default_rng(seed).permutation(len(X)), k)\n"
         "    scores = np.zeros(len(lambdas))\n"
         "    for index, lam in enumerate(lambdas):\n"
         "        for fold in folds:\n"
         "            train = np.setdiff1d(np.arange(len(X)), fold)\n"
         "            boxes = predict_boxes(fit_ridge(X[train], Y[train], lam), X[fold])\n"
         "            scores[index] += np.sum((boxes - Y[fold]) ** 2)\n"
         "    scores /= Y.size\n"
         "    return float(lambdas[int(np.argmin(scores))]), scores"),
    ])
    report = grade.grade(3, path)
    assert any("Do not penalize the bias" in m for m in part(report, "fit_ridge").messages)
    assert any("Any ground-truth box of the image may match" in m for m in part(report, "corloc").messages)
    # choose_lambda calls the broken fit_ridge: the grader says so instead of blaming the folds
    choose = part(report, "choose_lambda")
    assert not choose.ok and any("make parts 4 and 5 pass first" in m for m in choose.messages)
    assert part(report, "iou").ok and part(report, "grid_features").ok and part(report, "predict_boxes").ok


def test_a_crash_is_reported_with_the_students_line(tmp_path):
    path = student_file(tmp_path, 3, [
        ("    return regression.grid_features(maps, n)", "    values = list(maps.shape)\n    return values[7]"),
    ])
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
    path = tmp_path / "partial.py"
    path.write_text((SOLUTIONS / FILES[2]).read_text().replace("def deconvnet_relu(", "def deconv_relu("))
    report = grade.grade(2, path)
    assert any("has no function `deconvnet_relu`" in m for m in part(report, "deconvnet_relu").messages)
    assert report.score == 13


def test_the_same_seed_gives_the_same_cases(tmp_path):
    path = student_file(tmp_path, 1, [('    return nets.ReLU("relu").backward(signal, eta)',
                                       "    return signal * (eta >= 0)")])
    first, again, other = (grade.grade(1, path, seed=s).format() for s in (5, 5, 6))
    assert first == again and first != other


def test_main_exit_status_and_report(capsys):
    assert grade.main(["1", str(SOLUTIONS / FILES[1])]) == 0
    assert "full marks" in capsys.readouterr().out
    assert grade.main(["rules", str(SKELETONS / FILES[2])]) == 1
    assert "not implemented yet" in capsys.readouterr().out
    assert grade.main(["3", "no/such/file.py"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert grade.main(["9"]) == 2
    assert "unknown assignment" in capsys.readouterr().err


def test_sub_command_wiring(capsys):
    """What localize/cli.py registers: ``grade.add_parser(commands)`` sets ``run``."""
    parser = argparse.ArgumentParser(prog="sensloc")
    commands = parser.add_subparsers(dest="command", required=True)
    grade.add_parser(commands)
    args = parser.parse_args(["grade", "3", str(SOLUTIONS / FILES[3]), "--seed", "4"])
    assert args.run(args) == 0
    assert "seed: 4" in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "sensloc.coursework.grade", "boxes", str(SOLUTIONS / FILES[3])],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Assignment 3" in done.stdout and "score: 15.0 / 15" in done.stdout
