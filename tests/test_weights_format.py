"""weights.format: the project's HDF5 weight files, written atomically and read defensively."""
import json

import h5py
import numpy as np
import pytest

from sensloc import nets
from sensloc.weights import format as weight_format
from sensloc.data.images import CAFFE_SQUEEZENET, TORCHVISION

SHA = "ab" * 32


def _random_squeezenet(seed=0, num_classes=1000):
    return nets.random_parameters(nets.build("squeezenet1_0", num_classes=num_classes), seed)


def _names(count):
    return [f"class {i} é" for i in range(count)]  # non-ASCII: the strings are UTF-8


@pytest.fixture
def saved(tmp_path):
    """A valid SqueezeNet file and the network it was written from."""
    net = _random_squeezenet()
    path = tmp_path / "squeezenet1_0.h5"
    weight_format.save(path, net, CAFFE_SQUEEZENET, _names(1000), "compressed_SqueezeNet.net",
                       SHA, created_by="test")
    return path, net


def _edit(path, change):
    with h5py.File(path, "r+") as file:
        change(file)


def test_round_trip_is_exact(saved):
    path, net = saved
    loaded = weight_format.load(path)
    assert loaded.name == "squeezenet1_0" and loaded.num_classes == 1000
    original, back = net.parameters(), loaded.parameters()
    assert list(back) == list(original)
    for name in original:
        for key in ("weight", "bias"):
            assert back[name][key].dtype == np.float32
            np.testing.assert_array_equal(back[name][key], original[name][key])
    assert loaded.preprocessing == CAFFE_SQUEEZENET
    assert loaded.class_names == _names(1000)
    assert loaded.source == {"path": str(path), "file": "compressed_SqueezeNet.net",
                             "sha256": SHA, "created_by": "test", "format_version": 1,
                             "training": None}
    x = np.random.default_rng(1).normal(0, 50, (1, 3, 227, 227)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), net(x))


def test_documented_layout_on_disk(saved):
    path, _ = saved
    with h5py.File(path, "r") as file:
        attrs = file.attrs
        assert attrs["format"] == "sensloc-weights" and attrs["format_version"] == 1
        assert attrs["architecture"] == "squeezenet1_0"
        assert json.loads(attrs["architecture_options"]) == {"num_classes": 1000}
        assert list(attrs["input_size"]) == [227, 227] and attrs["channel_order"] == "BGR"
        assert list(attrs["mean"]) == [104.0, 117.0, 123.0]
        assert attrs["source_sha256"] == SHA and attrs["source_file"] == "compressed_SqueezeNet.net"
        # "fire2/squeeze1x1" is a group fire2 holding a group squeeze1x1.
        assert isinstance(file["fire2"], h5py.Group)
        assert file["fire2"]["squeeze1x1"]["weight"].shape == (16, 96, 1, 1)
        assert file["conv1/weight"].dtype == np.float32
        assert file["class_names"][285].decode("utf-8") == "class 285 é"


def test_architecture_options_round_trip(tmp_path):
    net = _random_squeezenet(num_classes=7)
    path = weight_format.save(tmp_path / "w.h5", net, TORCHVISION, list("abcdefg"), "src.pth",
                              SHA)
    loaded = weight_format.load(path)
    assert loaded.num_classes == 7 and loaded.class_names == list("abcdefg")
    assert loaded.preprocessing == TORCHVISION
    assert weight_format.read_header(path)["architecture_options"] == {"num_classes": 7}


def test_truncated_file_is_a_clear_error(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    half = tmp_path / "half.h5"
    half.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="not a complete HDF5 file") as info:
        weight_format.load(half)
    assert str(half) in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no h5py trace


def test_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("hello")
    with pytest.raises(ValueError, match=f"{path}: not a complete HDF5 file"):
        weight_format.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such weight file"):
        weight_format.load(tmp_path / "absent.h5")


def test_another_hdf5_file_is_refused(tmp_path):
    path = tmp_path / "keras.h5"
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = [b"fc1"]
    with pytest.raises(ValueError, match="not a sensloc weight file .*convert"):
        weight_format.load(path)
    _edit(path, lambda f: f.attrs.__setitem__("format", "other-format"))
    with pytest.raises(ValueError, match="'other-format' rather than 'sensloc-weights'"):
        weight_format.load(path)


def test_other_architecture_than_asked(saved):
    path, _ = saved
    with pytest.raises(ValueError, match="holds squeezenet1_0, not vgg16") as info:
        weight_format.load(path, architecture="vgg16")
    assert str(path) in str(info.value)
    assert weight_format.load(path, architecture="squeezenet1_0").name == "squeezenet1_0"


def test_unknown_architecture_in_file(saved):
    path, _ = saved
    _edit(path, lambda f: f.attrs.__setitem__("architecture", "resnet50"))
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'"):
        weight_format.load(path)


def test_newer_format_version_is_refused(saved):
    path, _ = saved
    _edit(path, lambda f: f.attrs.__setitem__("format_version", 2))
    with pytest.raises(ValueError, match="format version 2 is not supported.*upgrade"):
        weight_format.load(path)


def test_wrong_shape_names_the_layer_and_file(saved):
    path, _ = saved

    def change(file):
        del file["fire3/expand1x1/weight"]
        file["fire3/expand1x1"].create_dataset("weight", data=np.zeros((64, 16, 3, 3), "f4"))

    _edit(path, change)
    with pytest.raises(ValueError) as info:
        weight_format.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    assert "fire3/expand1x1/weight" in message and "(64, 16, 1, 1)" in message


def test_nan_weight_is_refused(saved):
    path, _ = saved

    def change(file):
        weight = file["fire4/squeeze1x1/weight"]
        values = weight[()]
        values[3, 2, 0, 0] = np.nan
        weight[...] = values

    _edit(path, change)
    with pytest.raises(ValueError, match="fire4/squeeze1x1/weight contains NaN"):
        weight_format.load(path)


def test_missing_layer_and_extra_layer(saved):
    path, _ = saved
    _edit(path, lambda f: f.copy("conv1", "conv0"))
    with pytest.raises(ValueError, match=r"layers \['conv0'\] are not part of squeezenet1_0"):
        weight_format.load(path)
    _edit(path, lambda f: f.__delitem__("conv_final"))
    with pytest.raises(ValueError, match="layer 'conv_final' of squeezenet1_0 is missing"):
        weight_format.load(path)


def test_integer_weights_are_refused(saved):
    path, _ = saved

    def change(file):
        del file["conv1/bias"]
        file["conv1"].create_dataset("bias", data=np.zeros(96, np.int32))

    _edit(path, change)
    with pytest.raises(ValueError, match="conv1/bias has dtype int32"):
        weight_format.load(path)


def test_class_names_missing_or_miscounted(saved):
    path, _ = saved

    def fewer(file):
        del file["class_names"]
        file.create_dataset("class_names", data=_names(999), dtype=h5py.string_dtype())

    _edit(path, fewer)
    with pytest.raises(ValueError, match="999 class names for 1000 classes"):
        weight_format.load(path)
    _edit(path, lambda f: f.__delitem__("class_names"))
    with pytest.raises(ValueError, match="'class_names' is missing"):
        weight_format.load(path)


def test_bad_preprocessing_attribute(saved):
    path, _ = saved
    _edit(path, lambda f: f.attrs.__setitem__("channel_order", "GBR"))
    with pytest.raises(ValueError, match="bad preprocessing attributes.*channel_order"):
        weight_format.load(path)


def test_save_refuses_bad_input_and_writes_nothing(tmp_path):
    net = _random_squeezenet()
    path = tmp_path / "w.h5"
    with pytest.raises(ValueError, match="999 names but the network has 1000 classes"):
        weight_format.save(path, net, CAFFE_SQUEEZENET, _names(999), "src", SHA)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        weight_format.save(path, net, CAFFE_SQUEEZENET, _names(1000), "src", "abc")
    with pytest.raises(TypeError, match="Preprocessing"):
        weight_format.save(path, net, {"mean": 0}, _names(1000), "src", SHA)
    with pytest.raises(ValueError, match="do not build squeezenet1_0"):
        weight_format.save(path, net, CAFFE_SQUEEZENET, _names(1000), "src", SHA,
                           architecture_options={"depth": 3})
    with pytest.raises(ValueError, match="other parameter shapes"):
        weight_format.save(path, net, CAFFE_SQUEEZENET, _names(1000), "src", SHA,
                           architecture_options={"num_classes": 10})
    net.layer("conv1").weight[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="conv1/weight contains NaN or infinity"):
        weight_format.save(path, net, CAFFE_SQUEEZENET, _names(1000), "src", SHA)
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_keeps_the_old_file(saved, monkeypatch):
    path, _ = saved
    before = path.read_bytes()
    calls = {"n": 0}
    original = h5py.Group.create_dataset

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise OSError("disk full (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError, match="simulated"):
        weight_format.save(path, _random_squeezenet(seed=5), CAFFE_SQUEEZENET, _names(1000),
                           "other.net", SHA)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_read_header_reads_no_arrays(saved):
    path, _ = saved
    header = weight_format.read_header(path)
    assert header == {"format_version": 1, "architecture": "squeezenet1_0",
                      "architecture_options": {"num_classes": 1000},
                      "source_file": "compressed_SqueezeNet.net", "source_sha256": SHA,
                      "created_by": "test", "training": None}


def test_training_record_round_trips_and_is_checked(tmp_path):
    net = nets.random_parameters(nets.vgg_small())
    record = {"seed": 3, "command": "sensloc train-demo --seed 3", "held_out": {"accuracy": 0.9}}
    path = weight_format.save(tmp_path / "small.h5", net, CAFFE_SQUEEZENET, _names(10), "recipe.json",
                              SHA, training=record)
    assert weight_format.read_header(path)["training"] == record
    assert weight_format.load(path).source["training"] == record
    with pytest.raises(ValueError, match="seed"):
        weight_format.save(tmp_path / "bad.h5", net, CAFFE_SQUEEZENET, _names(10), "recipe.json",
                           SHA, training={"command": "no seed"})
    assert not (tmp_path / "bad.h5").exists()
