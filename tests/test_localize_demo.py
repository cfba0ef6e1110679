"""The embedded default: the packaged vgg_small, its training recipe, and ``sensloc demo``.

The packaged file is measured here again, independently of the numbers its ``training``
attribute records: classification accuracy and CorLoc on held-out scenes it never saw.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from sensloc import nets
from sensloc.data import scenes
from sensloc import weights
from sensloc.training import vgg_small as demo_module
from sensloc.localize.boxes import iou
from sensloc.cli.main import build_parser, main
from sensloc.training.vgg_small import (HELD_OUT_START, PACKAGED_WEIGHTS, Recipe, accuracy,
                                        scene_inputs)


@pytest.fixture(scope="module")
def small():
    if not PACKAGED_WEIGHTS.is_file():
        pytest.fail(f"{PACKAGED_WEIGHTS} is missing: it ships with the package")
    return weights.load("vgg_small", cache_dir="/nonexistent-cache")


def test_packaged_weights_load_without_installation_and_record_their_recipe(small):
    assert small.name == "vgg_small" and small.class_names == list(scenes.CLASS_NAMES)
    assert PACKAGED_WEIGHTS.stat().st_size < 5 * 2 ** 20
    training = small.source["training"]
    assert training["seed"] == 0 and training["command"] == "sensloc train-demo --seed 0"
    assert training["recipe"] == json.loads(json.dumps(Recipe().__dict__))
    assert training["held_out"]["accuracy"] >= 0.95


def test_packaged_network_classifies_held_out_scenes(small):
    # Scenes from another stream than the training stream and the recorded measurement.
    held_out = scenes.generate(600, seed=7, start=HELD_OUT_START)
    assert accuracy(small, held_out) >= 0.95


def test_vanilla_map_boxes_beat_the_center_box(small):
    fit = scenes.generate(300, seed=7, start=demo_module.BOX_FIT_START)
    test = scenes.generate(300, seed=7, start=HELD_OUT_START)
    specs = [demo_module.DEMO_MAPS["vanilla"]]
    protocols = {"threshold": demo_module.ThresholdBoxes(specs[0], "union"),
                 "center": demo_module.CenterBox()}
    fit_maps, test_maps = (demo_module.scene_maps(small, b, specs) for b in (fit, test))
    corloc = {}
    for name, protocol in protocols.items():
        protocol.fit(fit_maps, list(fit.boxes[:, None]))
        boxes = protocol.predict(test_maps)
        corloc[name] = np.mean([np.max(iou(b, g)) >= 0.5 for b, g in zip(boxes, test.boxes)])
    assert corloc["threshold"] > corloc["center"] + 0.1, corloc


def test_demo_command_prints_and_draws(capsys, tmp_path, small):
    figure = tmp_path / "demo.png"
    assert main(["demo", "--count", "3", "--out", str(figure)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[-1] == f"figure: {figure}"
    assert all(line.startswith(f"scene {i + 1}: ") and "box IoU" in line
               for i, line in enumerate(out[:3]))
    assert figure.read_bytes()[:4] == b"\x89PNG" and figure.stat().st_size > 20_000
    # The printed classes are the network's predictions for exactly those scenes.
    batch = scenes.generate(3, seed=0, start=HELD_OUT_START)
    predicted = small(scene_inputs(batch.images)).argmax(axis=1)
    for line, index in zip(out, predicted):
        assert line.split(": ")[1].startswith(small.class_names[index] + " (")


def test_demo_refuses_bad_input(capsys, tmp_path):
    assert main(["demo", "--count", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert "count" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["demo", "--image", str(broken), "--out", str(tmp_path / "y.png")]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_demo_on_photos_with_an_imagenet_network(capsys, tmp_path, squeezenet_file, photo_files):
    figure = tmp_path / "photos.png"
    status = main(["demo", "--image", str(photo_files["chelsea"]), "--weights",
                   str(squeezenet_file), "--out", str(figure)])
    out = capsys.readouterr().out
    assert status == 0 and "Egyptian cat" in out and figure.is_file()


def test_recipe_command_round_trips_through_the_parser():
    recipe = Recipe(seed=3, steps=11, lr=0.01)
    assert recipe.command() == "sensloc train-demo --seed 3 --steps 11 --lr 0.01"
    args = build_parser().parse_args(recipe.command().split()[1:])
    assert Recipe(**{k: getattr(args, k) for k in Recipe().__dict__}) == recipe
    rates = [Recipe(steps=100, warmup=10).learning_rate(t) for t in range(100)]
    assert rates[0] == pytest.approx(2e-4) and max(rates) == pytest.approx(rates[9])
    assert rates[-1] < 1e-5


TRAIN_SCRIPT = """
import sys
from sensloc.training.vgg_small import Recipe, train
if __name__ == "__main__":  # training spawns a scene-making process, which imports this file
    train(sys.argv[1], Recipe(steps=4, batch_size=8, warmup=2), progress=False, held_out=40)
"""


def test_training_is_reproducible_from_the_seed(tmp_path):
    # Two separate processes (as two users would run it) write identical parameters.
    paths = [tmp_path / f"run{i}.h5" for i in range(2)]
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    for path in paths:
        subprocess.run([sys.executable, str(script), str(path)], check=True, timeout=600)
    first, second = (weights.load(p) for p in paths)
    for name, arrays in first.parameters().items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(value, second.parameters()[name][key])
    untrained = nets.random_parameters(nets.vgg_small(), 0)
    assert not np.array_equal(first.parameters()["fc8"]["weight"],
                              untrained.parameters()["fc8"]["weight"])
    assert first.source["training"]["images_seen"] == 32
