"""weights.torch_pth: reading torch.save files without torch and without running their code."""
import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from sensloc.weights.torch_pth import TORCH_LEGACY_MAGIC, UnsafePickleError, load_state_dict


# --------------------------------------------------------------------------------------------
# Hand-made files (no torch needed)
# --------------------------------------------------------------------------------------------

class _RunsCommand:
    """Pickles as ``os.system(command)``; pickling it runs nothing, unpickling would."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _write_zip(path, data_pkl, storages=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, raw in storages:
            archive.writestr(f"archive/data/{key}", raw)


def _legacy_stream(main_pickle):
    """A legacy torch.save stream whose object pickle is ``main_pickle`` and has no storage."""
    header = b"".join(pickle.dumps(obj, protocol=2) for obj in (
        TORCH_LEGACY_MAGIC, 1001,
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 8}}))
    return header + main_pickle + pickle.dumps([], protocol=2)


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_code_in_the_pickle_is_refused_not_run(tmp_path, container):
    marker = tmp_path / "marker"
    payload = pickle.dumps({"w": _RunsCommand(f"touch {marker}")}, protocol=2)
    assert b"posix" in payload or b"nt" in payload  # the pickle really names os.system
    path = tmp_path / "evil.pth"
    if container == "zip":
        _write_zip(path, payload)
    else:
        path.write_bytes(_legacy_stream(payload))
    with pytest.raises(UnsafePickleError) as info:
        load_state_dict(path)
    assert f"{os.system.__module__}.system" in str(info.value)  # posix.system on Linux
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_not_a_pytorch_file(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(b"definitely not a pickle" * 10)
    with pytest.raises(ValueError, match="not a PyTorch file"):
        load_state_dict(path)
    _write_zip(path, b"")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not a PyTorch one"):
        load_state_dict(path)


def test_pickle_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "x.pth"
    _write_zip(path, pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        load_state_dict(path)
    _write_zip(path, pickle.dumps({"epoch": 3}, protocol=2))
    with pytest.raises(ValueError, match="entry 'epoch' is a int, not a tensor"):
        load_state_dict(path)


# --------------------------------------------------------------------------------------------
# Files written by torch itself
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch writes the reference files")


def _tensors(torch):
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=generator)
    return collections.OrderedDict([
        ("plain", torch.randn(4, 3, 2, 2, generator=generator)),
        ("transposed", base.t()),                     # strides (1, 5)
        ("slice", base[2:5, 1:4]),                    # offset 11 into a shared storage
        ("shares_storage", base),
        ("half", torch.randn(7, generator=generator).half()),
        ("bfloat16", torch.randn(5, generator=generator).bfloat16()),
        ("double", torch.randn(3, generator=generator).double()),
        ("long", torch.arange(-3, 9)),
        ("bool", torch.tensor([True, False, True])),
        ("empty", torch.zeros(0, 4)),
        ("scalar", torch.tensor(2.5)),
    ])


@pytest.mark.parametrize("zip_container", [True, False], ids=["zip", "legacy"])
def test_tensors_come_back_exactly(torch, tmp_path, zip_container):
    tensors = _tensors(torch)
    path = tmp_path / "t.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=zip_container)
    state = load_state_dict(path)
    assert list(state) == list(tensors)
    for name, tensor in tensors.items():
        expected = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        assert state[name].dtype == expected.dtype, name
        assert state[name].shape == expected.shape, name
        assert state[name].flags.c_contiguous
        np.testing.assert_array_equal(state[name], expected, err_msg=name)


@pytest.mark.parametrize("zip_container", [True, False], ids=["zip", "legacy"])
def test_module_state_dict_with_metadata(torch, tmp_path, zip_container):
    # model.state_dict() carries a _metadata attribute, pickled with a BUILD opcode.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2))
    path = tmp_path / "m.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=zip_container)
    state = load_state_dict(path)
    assert list(state) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(state[name], value.numpy())


def test_pickled_module_is_refused(torch, tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear"):
        load_state_dict(path)


def test_truncated_files(torch, tmp_path):
    for zip_container in (True, False):
        path = tmp_path / "t.pth"
        torch.save({"w": torch.ones(1000)}, path, _use_new_zipfile_serialization=zip_container)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) - 100])
        with pytest.raises(ValueError, match="truncated") as info:
            load_state_dict(path)
        assert str(path) in str(info.value)


def test_tensor_reaching_outside_its_storage_is_refused(torch, tmp_path):
    # as_strided does not check bounds: a crafted stride must not read foreign memory.
    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (Storage(), 0, (4,), (1000,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", torch.FloatStorage, "0", "cpu", 4)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"w": Tensor()})
    path = tmp_path / "strided.pth"
    _write_zip(path, buffer.getvalue(), [("0", np.zeros(4, "<f4").tobytes())])
    with pytest.raises(ValueError, match="reaches element 3000 of a storage of 4"):
        load_state_dict(path)
    # And a storage whose bytes disagree with its declared size.
    _write_zip(path, buffer.getvalue(), [("0", np.zeros(3, "<f4").tobytes())])
    with pytest.raises(ValueError, match="holds 12 bytes, expected 4 x 4 = 16"):
        load_state_dict(path)


def test_big_endian_legacy_header_is_honoured(torch, tmp_path):
    # Rewrite a legacy file as a big-endian machine would have written it.
    path = tmp_path / "le.pth"
    values = torch.arange(6, dtype=torch.float32)
    torch.save({"w": values}, path, _use_new_zipfile_serialization=False)
    stream = io.BytesIO(path.read_bytes())
    for _ in range(3):
        pickle.load(stream)
    main_start = stream.tell()
    stream.seek(0)
    header = stream.read(main_start)
    rest = stream.read()
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": False,
                             "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2)
    magic_and_version = pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2) + pickle.dumps(1001,
                                                                                   protocol=2)
    assert header.startswith(magic_and_version)
    data_start = len(rest) - (8 + 6 * 4)
    count, = struct.unpack("<q", rest[data_start:data_start + 8])
    assert count == 6
    big = (rest[:data_start] + struct.pack(">q", 6)
           + np.arange(6, dtype=">f4").tobytes())
    path.write_bytes(magic_and_version + sys_info + big)
    np.testing.assert_array_equal(load_state_dict(path)["w"], np.arange(6, dtype=np.float32))
