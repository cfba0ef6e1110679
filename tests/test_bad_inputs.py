"""Bad inputs through the real command line: ``python -m sensloc ...`` in a subprocess.

Every refusal is checked the same way (:func:`refused`): exit status 2, a message of at most
three lines that names the file and the problem, no traceback, no file left behind and every
input byte-identical afterwards (:func:`snapshot` of the working folder before and after).
Commands run in a temporary working folder with ``SENSLOC_CACHE_DIR`` pointed at a temporary
cache. The packaged ``vgg_small`` serves wherever the network does not matter (no download);
the real SqueezeNet, converted from ../shared when it is there, only where it does.
"""
import csv
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from sensloc import weights
from test_weights_images import png_header  # a tiny PNG declaring a huge size

PROGRESS = "maps:"  # the progress bar's lines, which are not part of a message


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty user cache: nothing installed but the packaged vgg_small."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def work(tmp_path):
    """The working folder, with one ordinary photo."""
    folder = tmp_path / "work"
    folder.mkdir()
    pixels = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "photo.png")
    return folder


def run(folder, cache, *args, limit_kb=None, umask=None, wait=True):
    """``python -m sensloc ARGS`` in ``folder``; under ``ulimit -v limit_kb`` and ``umask``."""
    command = [sys.executable, "-m", "sensloc", *map(str, args)]
    if limit_kb or umask:
        prefix = (f"ulimit -v {limit_kb}; " if limit_kb else "") + (f"umask {umask}; " if umask else "")
        command = ["bash", "-c", prefix + 'exec "$@"', "bash", *command]
    env = {**os.environ, "SENSLOC_CACHE_DIR": str(cache)}
    if not wait:
        # SIGINT as a terminal delivers it: a shell that starts the tests in the background
        # hands its children an ignored SIGINT, which Python then keeps ignoring.
        return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def snapshot(folder):
    """{relative path: SHA-256} of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def message_lines(stderr):
    """The lines of stderr that are not the progress bar's."""
    lines = stderr.replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith(PROGRESS)]


def refused(result, *words, status=2):
    """Exit ``status``, at most three message lines containing every one of ``words``, no
    traceback. Returns the message."""
    lines = message_lines(result.stderr)
    message = "\n".join(lines)
    assert result.returncode == status, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Warning:" not in result.stderr, result.stderr
    assert 1 <= len(lines) <= 3, result.stderr
    for word in words:
        assert word in message, (word, message)
    return message


def save(folder, name, image, **options):
    image.save(folder / name, **options)
    return folder / name


# ---------------------------------------------------------------------------- photos

def bad_photos(folder):
    """Each bad photo and the words its refusal must contain."""
    (folder / "empty.jpg").write_bytes(b"")
    good = (folder / "photo.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[:len(good) // 2])
    (folder / "text.jpg").write_text("hello, I am a text file and not a JPEG\n")
    nan = np.full((20, 30), 0.5, np.float32)
    nan[3, 4] = np.nan
    save(folder, "nan.tiff", Image.fromarray(nan, "F"))
    return {"empty.jpg": "empty", "truncated.png": "truncated", "text.jpg": "not an image",
            "nan.tiff": "NaN"}


def test_bad_photos_are_refused_naming_them(work, cache):
    expected = bad_photos(work)
    before = snapshot(work)
    for name, problem in expected.items():
        refused(run(work, cache, "classify", name, "--net", "vgg_small"), name, problem)
    assert snapshot(work) == before


def test_unusual_photos_are_read(work, cache):
    save(work, "grey.png", Image.new("L", (30, 20), 90))
    save(work, "cmyk.jpg", Image.new("CMYK", (30, 20), (10, 200, 30, 0)))
    save(work, "rgba.png", Image.new("RGBA", (30, 20), (200, 10, 10, 100)))
    save(work, "sixteen.png", Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16)))
    before = snapshot(work)
    names = ["grey.png", "cmyk.jpg", "rgba.png", "sixteen.png"]
    result = run(work, cache, "classify", *names, "--net", "vgg_small", "--top", "1")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines()[::2] == names  # each photo, then its one class
    assert snapshot(work) == before


def test_large_images_within_3_gb_of_address_space(work, cache):
    # 8000 x 8000 RGBA (a 250 KB file): composited in float64 at full size it needed 6.6 GB.
    rgba = np.zeros((8000, 8000, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[2000:6000, 2000:6000, 3] = 255
    save(work, "big.png", Image.fromarray(rgba))
    del rgba
    png_header(work / "bomb.png", 50000, 50000)  # Pillow's DecompressionBombError
    png_header(work / "huge.png", 9000, 9000)  # below Pillow's limits, above sensloc's
    before = snapshot(work)
    result = run(work, cache, "classify", "big.png", "--net", "vgg_small", limit_kb=3_000_000)
    assert result.returncode == 0 and result.stdout.startswith("big.png\n"), result.stderr
    refused(run(work, cache, "classify", "bomb.png", "--net", "vgg_small", limit_kb=3_000_000),
            "bomb.png", "too large")
    refused(run(work, cache, "classify", "huge.png", "--net", "vgg_small", limit_kb=3_000_000),
            "huge.png: too large: 9000x9000")
    assert snapshot(work) == before


# ---------------------------------------------------------------------------- weights

def test_truncated_weight_file_and_another_architecture_are_refused(work, cache):
    packaged = weights.packaged_path("vgg_small").read_bytes()
    (work / "trunc.h5").write_bytes(packaged[:3000])
    (work / "small.h5").write_bytes(packaged)
    before = snapshot(work)
    refused(run(work, cache, "classify", "photo.png", "--weights", "trunc.h5"), "trunc.h5",
            "not a complete HDF5 file")
    refused(run(work, cache, "classify", "photo.png", "--net", "vgg16", "--weights", "small.h5"),
            "small.h5", "vgg_small, not vgg16")
    assert snapshot(work) == before


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_code_in_a_pth_file_is_refused_not_run(work, tmp_path, container):
    from test_weights_torch_pth import _RunsCommand, _legacy_stream, _write_zip
    own = tmp_path / "own-cache"
    marker = work / "marker"
    payload = pickle.dumps({"features.0.weight": _RunsCommand(f"touch {marker}")}, protocol=2)
    path = work / "vgg16-397923af.pth"
    if container == "zip":
        _write_zip(path, payload)
    else:
        path.write_bytes(_legacy_stream(payload))
    before = snapshot(work)
    refused(run(work, own, "weights", "convert", path.name), path.name, "system")
    assert not marker.exists()  # the pickle's call never ran
    assert snapshot(work) == before and not list(own.rglob("*.h5"))


def test_weights_list_names_a_corrupt_cached_file_in_one_line(work, tmp_path):
    own = tmp_path / "own-cache"
    (own / "weights").mkdir(parents=True)
    (own / "weights" / "broken.h5").write_text("garbage")
    result = run(work, own, "weights", "list")
    assert result.returncode == 0 and "vgg_small" in result.stdout
    assert result.stderr.count("\n") == 1 and "broken.h5" in result.stderr
    assert "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr


# ---------------------------------------------------------------------------- outputs

def test_explain_never_overwrites_its_input_and_checks_outputs_first(work, cache):
    before = snapshot(work)
    refused(run(work, cache, "explain", "photo.png", "--net", "vgg_small", "--out", "photo.png"),
            "photo.png", "input")
    refused(run(work, cache, "explain", "photo.png", "--net", "vgg_small", "--out",
                "nodir/heat.png", "--save-npy", "a.npy"), "nodir", "does not exist")
    refused(run(work, cache, "explain", "photo.png", "--net", "vgg_small", "--out", "."),
            "folder")
    refused(run(work, cache, "explain", "photo.png", "--net", "vgg_small", "--out", "heat.pnk"),
            "heat.pnk", ".png", "not .pnk")
    assert snapshot(work) == before  # no a.npy, no heat.png


@pytest.mark.parametrize("umask, mode", [("022", 0o644), ("027", 0o640)])
def test_explain_names_what_it_wrote_with_the_umask(work, cache, umask, mode):
    before = snapshot(work)
    result = run(work, cache, "explain", "photo.png", "--net", "vgg_small", "--save-npy", "rawmap",
                 umask=umask)
    assert result.returncode == 0, result.stderr
    assert "written to heat.png" in result.stdout and "raw attribution to rawmap.npy" in result.stdout
    assert set(snapshot(work)) == set(before) | {"heat.png", "rawmap.npy"}
    assert np.load(work / "rawmap.npy").shape == (3, 64, 64)
    for name in ("heat.png", "rawmap.npy"):
        assert (work / name).stat().st_mode & 0o777 == mode


def test_localize_gives_photos_of_the_same_name_their_own_figures(work, cache):
    for folder, seed in (("a", 1), ("b", 2)):
        (work / folder).mkdir()
        pixels = (np.random.default_rng(seed).random((50, 70, 3)) * 255).astype(np.uint8)
        save(work / folder, "photo.png", Image.fromarray(pixels))
    before = snapshot(work)
    result = run(work, cache, "localize", "a/photo.png", "b/photo.png", "--net", "vgg_small",
                 "--out-dir", "figs")
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["figure"] for a in answers] == ["figs/photo-1-box.png", "figs/photo-2-box.png"]
    assert set(snapshot(work)) == set(before) | {"figs/photo-1-box.png", "figs/photo-2-box.png"}
    assert {k: v for k, v in snapshot(work).items() if k in before} == before


def test_counts_must_be_positive(work, cache):
    before = snapshot(work)
    for args, option in ((["classify", "photo.png", "--top", "-3"], "--top"),
                         (["classify", "photo.png", "--top", "0"], "--top"),
                         (["evaluate", ".", "--jobs", "-2"], "--jobs"),
                         (["evaluate", ".", "--jobs", "0"], "--jobs"),
                         (["evaluate", ".", "--cv", "1"], "--cv")):
        assert refused(run(work, cache, *args, "--net", "vgg_small"), option, "at least").count("\n") == 0
    assert snapshot(work) == before


def test_version_and_help_texts(work, cache):
    from sensloc import __version__
    from sensloc.cli.main import build_parser
    result = run(work, cache, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"sensloc {__version__}"

    def parsers(parser):
        yield parser
        for action in parser._actions:
            for sub in (getattr(action, "choices", None) or {}).values() \
                    if isinstance(getattr(action, "choices", None), dict) else ():
                yield from parsers(sub)
    for parser in parsers(build_parser()):
        assert "``" not in (parser.description or "") and ":func:" not in (parser.description or "")
        for action in parser._actions:
            if action.option_strings and action.dest not in ("help", "version"):
                assert action.help, f"{parser.prog} {action.option_strings[0]} has no help line"
                assert "``" not in action.help and ":func:" not in action.help, action.help
    result = run(work, cache, "evaluate", "--help")
    assert result.returncode == 0 and "``" not in result.stdout


def test_demo_on_a_photo_does_not_use_the_shapes_network(work, cache):
    # Without --net, photos want the ImageNet default, which this cache lacks: named, not
    # silently replaced by vgg_small (which knows ten generated shapes).
    before = snapshot(work)
    refused(run(work, cache, "demo", "--image", "photo.png", "--out", "demo.png"),
            "squeezenet1_0 is not installed")
    assert snapshot(work) == before


# ---------------------------------------------------------------------------- the real SqueezeNet

@pytest.fixture(scope="module")
def squeezenet_cache(tmp_path_factory):
    """A cache with the real SqueezeNet 1.0, converted by the command line from ../shared."""
    source = shared_path("weights", "squeezenet-1.0-dc", "compressed_SqueezeNet.net")
    folder = tmp_path_factory.mktemp("squeezenet-cache")
    result = run(folder, folder, "weights", "convert", source)
    assert result.returncode == 0, result.stderr
    return folder


def test_an_all_zero_map_is_said_and_photo_demo_uses_imagenet(work, squeezenet_cache):
    from skimage import data
    save(work, "chelsea.png", Image.fromarray(data.chelsea()))
    before = snapshot(work)
    # The deconvnet signal dies at fire8 for this photo (Captum agrees): said, in one line.
    result = run(work, squeezenet_cache, "explain", "chelsea.png", "--method", "deconvnet")
    assert result.returncode == 0, result.stderr
    assert "chelsea.png: note: the deconvnet map of class 285 is zero everywhere" in result.stderr
    assert len(message_lines(result.stderr)) == 1
    result = run(work, squeezenet_cache, "demo", "--image", "chelsea.png")
    assert result.returncode == 0 and "chelsea.png: Egyptian cat" in result.stdout, result.stderr
    assert set(snapshot(work)) == set(before) | {"heat.png", "sensloc-demo.png"}


# ---------------------------------------------------------------------------- datasets

@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """24 generated scenes (vgg_small's classes) with their manifest."""
    from sensloc.data.scenes.generate import generate
    from sensloc.data.scenes.save import save_scenes
    folder = tmp_path_factory.mktemp("scenes")
    save_scenes(folder, generate(24, seed=5))
    return folder


def dataset(work, scenes, edit=None, encoding="utf-8"):
    """A copy of the scenes in ``work/data``; ``edit(rows)`` may change the manifest's rows."""
    shutil.copytree(scenes, work / "data")
    if edit is not None:
        with open(scenes / "manifest.csv", newline="") as stream:
            rows = list(csv.reader(stream))
        rows = edit(rows)
        with open(work / "data" / "manifest.csv", "w", newline="", encoding=encoding) as stream:
            csv.writer(stream, lineterminator="\n").writerows(rows)
    return work / "data"


EVALUATE = ("evaluate", "data", "--net", "vgg_small", "--preset", "gradient", "--cv", "2",
            "--cache", "maps")


def test_a_manifest_with_a_byte_order_mark_is_read(work, cache, scenes):
    dataset(work, scenes, edit=lambda rows: rows, encoding="utf-8-sig")
    assert (work / "data" / "manifest.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    result = run(work, cache, *EVALUATE, "--results", "r.csv")
    assert result.returncode == 0, result.stderr
    assert "| gradient (2-fold CV) |" in result.stdout and "| 24 |" in result.stdout


@pytest.mark.parametrize("edit, words", [
    (lambda rows: rows + [rows[3]], ["manifest.csv: lines 4 and 26 both list image"]),
    (lambda rows: rows[:5] + [[rows[5][0].replace(".png", "-gone.png")] + rows[5][1:]] + rows[6:],
     ["manifest.csv, line 6: photo", "-gone.png", "not found"]),
    (lambda rows: rows[:2] + [rows[2][:4] + ["5000"] + rows[2][5:]] + rows[3:],
     ["data: image scene_5_0000001 has class_index 5000, but vgg_small has 10 classes"]),
])
def test_manifest_mistakes_are_named_before_any_map(work, cache, scenes, edit, words):
    dataset(work, scenes, edit)
    before = snapshot(work)
    refused(run(work, cache, *EVALUATE), *words)
    assert snapshot(work) == before and not (work / "maps").exists()


def test_the_same_image_in_two_datasets_is_refused(work, cache, scenes):
    dataset(work, scenes)
    shutil.copytree(work / "data", work / "copy")
    before = snapshot(work)
    refused(run(work, cache, *EVALUATE[:2], "copy", *EVALUATE[2:]),
            "image id 'scene_5_0000000' is listed twice", "data/scene_5_0000000.png",
            "copy/scene_5_0000000.png")
    assert snapshot(work) == before


def test_a_file_that_is_not_a_dataset_is_named(work, cache):
    (work / "cat.jpg").write_bytes((work / "photo.png").read_bytes())
    before = snapshot(work)
    refused(run(work, cache, "evaluate", "cat.jpg", "--net", "vgg_small", "--preset", "gradient"),
            "cat.jpg is not a manifest")
    assert snapshot(work) == before


def test_a_corrupt_photo_in_a_dataset_is_named_on_a_line_of_its_own(work, cache, scenes):
    data = dataset(work, scenes)
    victim = sorted(data.glob("*.png"))[10]
    victim.write_bytes(victim.read_bytes()[:200])
    before = snapshot(work)
    result = run(work, cache, *EVALUATE, "--results", "r.csv")
    refused(result, victim.name, "truncated")
    assert f"\nsensloc: error: data/{victim.name}" in "\n" + result.stderr.replace("\r", "\n")
    assert {k: v for k, v in snapshot(work).items() if not k.startswith("maps/")} == before


# ---------------------------------------------------------------------------- results files

def test_results_of_other_inputs_are_refused_and_other_files_kept(work, cache, scenes):
    data = dataset(work, scenes)
    (work / "summary.json").write_text('{"n": 24}')  # no final newline: a "torn line"
    before = snapshot(work)
    message = refused(run(work, cache, *EVALUATE, "--results", "summary.json"), "summary.json",
                      "not a sensloc results file")
    assert "unchanged" in message and snapshot(work) == before
    for option, value in (("--results", "nodir/r.csv"), ("--summary-json", "nodir/s.json"),
                          ("--summary-json", "data/manifest.csv"), ("--plot", "photo.png")):
        refused(run(work, cache, *EVALUATE, option, value), value)
        assert snapshot(work) == before and not (work / "maps").exists()

    first = run(work, cache, *EVALUATE, "--results", "r.csv")
    assert first.returncode == 0, first.stderr
    kept = (work / "r.csv").read_bytes()
    refused(run(work, cache, *EVALUATE, "--results", "r.csv", "--seed", "1"),
            "r.csv holds results of another run (seed 0 there, 1 now)")
    rows = list(csv.reader((data / "manifest.csv").read_text().splitlines()))
    rows[1][5] = "0,0,64,64"  # one ground-truth box edited
    with open(data / "manifest.csv", "w", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)
    refused(run(work, cache, *EVALUATE, "--results", "r.csv"), "r.csv",
            "digest of the images, classes and boxes")
    assert (work / "r.csv").read_bytes() == kept


def table(stdout):
    return [line for line in stdout.splitlines() if line.startswith("|")]


def test_ctrl_c_and_kill_9_during_maps_resume_to_the_same_file(work, cache, tmp_path):
    from sensloc.data.scenes.generate import generate
    from sensloc.data.scenes.save import save_scenes
    save_scenes(work / "data", generate(600, seed=6))  # maps long enough to interrupt
    command = ("evaluate", "data", "--net", "vgg_small", "--preset", "khan", "--cv", "2",
               "--jobs", "2")
    reference = run(work, cache, *command, "--cache", "fresh", "--results", "fresh.csv")
    assert reference.returncode == 0, reference.stderr

    for sig, status in ((signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)):
        name = sig.name.lower()
        process = run(work, cache, *command, "--cache", name, "--results", f"{name}.csv", wait=False)
        started = time.time()
        while len(list((work / name).rglob("*.npy"))) < 10 and time.time() - started < 120:
            time.sleep(0.02)
        os.killpg(process.pid, sig)  # the whole group, as a terminal's Ctrl-C does
        out, err = process.communicate(timeout=120)
        if sig == signal.SIGINT:
            assert process.returncode == status, err
            assert "KeyboardInterrupt" not in err and "Traceback" not in err, err
            assert message_lines(err) == [f"sensloc: interrupted; the finished maps are kept in "
                                          f"{name}; run the same command again to resume"]
        assert len(list((work / name).rglob("*.npy"))) < 3 * 200  # stopped in the middle
        again = run(work, cache, *command, "--cache", name, "--results", f"{name}.csv")
        assert again.returncode == 0, again.stderr
        assert (work / f"{name}.csv").read_bytes() == (work / "fresh.csv").read_bytes()
        assert table(again.stdout) == table(reference.stdout)

    # kill -9 while the results are written leaves a torn last line (rows are appended and
    # fsynced one at a time): the rerun drops the torn part and completes the file exactly.
    fresh = (work / "fresh.csv").read_bytes()
    (work / "torn.csv").write_bytes(fresh[:len(fresh) * 2 // 3 - 5])
    again = run(work, cache, *command, "--cache", "fresh", "--results", "torn.csv")
    assert again.returncode == 0, again.stderr
    assert (work / "torn.csv").read_bytes() == fresh


def test_ctrl_c_on_a_local_dask_cluster_prints_one_line_and_resumes(work, cache):
    pytest.importorskip("distributed", reason="dask.distributed is an optional extra")
    from sensloc.data.scenes.generate import generate
    from sensloc.data.scenes.save import save_scenes
    save_scenes(work / "data", generate(1200, seed=7))  # maps long enough to interrupt
    command = ("evaluate", "data", "--net", "vgg_small", "--preset", "khan", "--cv", "2",
               "--dask", "local", "--jobs", "2", "--cache", "maps", "--results", "r.csv")
    process = run(work, cache, *command, wait=False)
    started = time.time()
    while len(list((work / "maps").rglob("*.npy"))) < 20 and time.time() - started < 120:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)  # the scheduler, the nannies and the workers too
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert message_lines(err) == ["sensloc: interrupted; the finished maps are kept in maps; "
                                  "run the same command again to resume"]
    assert not (work / "r.csv").exists()  # rows are written only once every map exists
    again = run(work, cache, *command)
    assert again.returncode == 0, again.stderr
    assert len(table(again.stdout)) >= 3, again.stdout  # header, rule, a row per configuration
