"""Tests for weights.classes and the shipped ImageNet class-name file."""
import importlib.util
import re

import pytest

from conftest import REPO, shared_path
from sensloc.weights.classes import imagenet_class_names, imagenet_classes

DATA = REPO / "weights" / "data"


def test_known_classes_by_index():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[285] == "Egyptian cat"
    assert names[967] == "espresso"
    assert names[0] == "tench, Tinca tinca"
    assert imagenet_class_names(short=True)[:3] == ["tench", "goldfish", "great white shark"]
    assert imagenet_classes()[285] == ("n02124075", "Egyptian cat")


def test_wnids_are_well_formed_unique_and_sorted():
    wnids = [wnid for wnid, _ in imagenet_classes()]
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in wnids)
    # Class index order is the sorted order of the wnids (Keras, torchvision and Caffe agree).
    assert wnids == sorted(set(wnids))


def test_returned_lists_are_copies():
    imagenet_class_names().clear()
    imagenet_classes().clear()
    assert len(imagenet_class_names()) == len(imagenet_classes()) == 1000


def test_matches_synset_words():
    source = shared_path("data", "synset_words.txt")
    lines = source.read_text(encoding="utf-8").splitlines()
    assert [f"{wnid} {name}" for wnid, name in imagenet_classes()] == lines


def import_generator():
    """weights/data/make_class_names.py is a script, not part of the package: load it by path."""
    spec = importlib.util.spec_from_file_location("make_class_names", DATA / "make_class_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_the_shipped_file(tmp_path):
    generator = import_generator()
    output = tmp_path / "classes.txt"
    classes = generator.read_synset_words(shared_path("data", "synset_words.txt"))
    generator.write_class_names(classes, output)
    assert output.read_bytes() == (DATA / "imagenet_classes.txt").read_bytes()


def test_generator_refuses_a_bad_source(tmp_path):
    bad = tmp_path / "synset_words.txt"
    bad.write_text("n01440764 tench\nnot-a-wnid goldfish\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(bad))}, line 2"):
        import_generator().read_synset_words(bad)
    bad.write_text("n01440764 tench\n")
    with pytest.raises(ValueError, match="expected 1000 classes, found 1"):
        import_generator().read_synset_words(bad)
