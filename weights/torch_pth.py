"""Read a PyTorch state dict (``.pth``) as NumPy arrays without PyTorch and without running code.

``torch.save`` writes Python pickles, and unpickling can call any function the file names
(``os.system`` included), so a downloaded ``.pth`` must never be opened with plain ``pickle``.
Here a :class:`pickle.Unpickler` subclass admits only the handful of globals a state dict needs:

* ``collections.OrderedDict``, the container;
* ``torch._utils._rebuild_tensor_v2`` (PyTorch >= 0.4), ``torch._utils._rebuild_tensor``
  (older) and ``torch._utils._rebuild_parameter``, replaced by NumPy functions below;
* the storage type names ``torch.FloatStorage``, ``torch.HalfStorage``, ... (also under
  ``torch.cuda``), which only say what dtype the raw bytes have.

Any other global raises :class:`UnsafePickleError` naming it; nothing from the file is executed.

Two containers are read:

Zip (PyTorch >= 1.6, the default since)
    members ``<archive>/data.pkl`` (the pickle), ``<archive>/data/<key>`` (the raw bytes of
    each storage), optionally ``<archive>/byteorder`` (``little`` or ``big``, little if absent)
    and ``<archive>/version``. A storage is referenced from the pickle by the persistent id
    ``("storage", storage_type, key, location, numel)``.
Legacy (PyTorch < 1.6, e.g. torchvision's 2017 VGG files)
    a sequence of pickles in one stream: the magic number ``0x1950a86a20f9469cfc6c``, the
    protocol version ``1001``, a ``sys_info`` dict (byte order, C type sizes), the object
    pickle with persistent ids ``("storage", storage_type, root_key, location, numel,
    view_metadata)``, the list of storage keys, then for each key an ``int64`` element count
    followed by the raw bytes. Since the bytes come after the pickle, tensors are first built
    as lazy views and filled in at the end.

A tensor is ``_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
backward_hooks)``: the elements ``storage[storage_offset + sum_d i_d * stride[d]]``. It becomes
a bounds-checked ``numpy.lib.stride_tricks.as_strided`` view of the storage, copied to a
contiguous array (so tensors that share a storage, or transposed ones, come out right).
"""
import collections
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["load_state_dict", "UnsafePickleError", "TORCH_LEGACY_MAGIC"]

#: First pickle of a legacy (pre-zip) ``torch.save`` file.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001


class UnsafePickleError(ValueError):
    """The pickle names a global that a state dict does not need; it was not loaded."""


class _StorageType:
    """What a ``torch.<Name>Storage`` global stands for: the dtype of the raw bytes."""

    def __init__(self, name, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __repr__(self):
        return f"torch.{self.name}"


# bfloat16 has no NumPy dtype: its bytes are read as uint16 and widened to float32 at the end.
_STORAGE_TYPES = {name: _StorageType(name, dtype) for name, dtype in [
    ("FloatStorage", "f4"), ("DoubleStorage", "f8"), ("HalfStorage", "f2"),
    ("BFloat16Storage", "u2"), ("LongStorage", "i8"), ("IntStorage", "i4"),
    ("ShortStorage", "i2"), ("CharStorage", "i1"), ("ByteStorage", "u1"),
    ("BoolStorage", "?"),
]}


class _LazyTensor:
    """A tensor's view parameters; turned into an array once the storage bytes are known."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # unused: requires_grad, backward_hooks, metadata: irrelevant for arrays.
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data  # an nn.Parameter is its data here


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
for _name, _type in _STORAGE_TYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = _type
    _ALLOWED_GLOBALS[("torch.cuda", _name)] = _type  # saved from a GPU: same bytes


class _Storage:
    """One storage: its element type, element count and (once read) a 1-D NumPy array."""

    def __init__(self, storage_type, numel, key):
        self.type, self.numel, self.key = storage_type, numel, key
        self.array = None


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ALLOWED_GLOBALS` and reads storages by id."""

    def __init__(self, stream, path, persistent_load=None):
        super().__init__(stream, encoding="utf-8")  # as torch.load, for Python 2 pickles
        self._path = path
        self._persistent = persistent_load

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refused to unpickle the global {module}.{name}: a PyTorch "
                "state dict needs only tensors and OrderedDict, and loading this file with "
                "torch.load(weights_only=False) could run code") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError(f"{self._path}: unexpected persistent id {pid!r}")
        return self._persistent(pid)


def _storage_type(value, path):
    if not isinstance(value, _StorageType):
        raise ValueError(f"{path}: storage type {value!r} is not a torch.*Storage type")
    return value


def _nonnegative_int(value, what, path):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{path}: {what} must be a non-negative integer, got {value!r}")
    return value


def _unpickle(unpickler, path, what):
    """Run one restricted unpickler; any failure becomes a ValueError naming the file."""
    try:
        return unpickler.load()
    except Exception as error:  # a damaged pickle can raise nearly anything
        if isinstance(error, ValueError) and str(error).startswith(f"{path}:"):
            raise  # ours (UnsafePickleError included), already naming the file
        raise ValueError(f"{path}: truncated or damaged {what} "
                         f"({type(error).__name__}: {error})") from None


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def load_state_dict(path):
    """Read a ``torch.save``-d state dict into NumPy arrays, safely.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pth``/``.pt`` file holding a dict of tensors (zip or legacy container).

    Returns
    -------
    collections.OrderedDict
        ``{name: numpy.ndarray}`` in file order; contiguous arrays of the stored dtype
        (bfloat16 widened to float32), shapes as in PyTorch (e.g. conv weights OIHW).

    Raises
    ------
    UnsafePickleError
        The pickle names a global outside the allow-list (the message names it).
    ValueError
        Not a PyTorch file, a truncated or inconsistent one (sizes, offsets, strides out of
        the storage), a very old tar-format file, or a pickle that is not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as stream:
        start = stream.read(4)
    # Test the first bytes, not zipfile.is_zipfile: that looks for an end-of-archive record
    # near the end, which raw float bytes of a legacy file could imitate by chance.
    if start == b"PK\x03\x04":
        result = _load_zip(path)
    elif tarfile.is_tarfile(path):
        raise ValueError(f"{path}: a tar-format PyTorch file (PyTorch < 0.1.10) is not "
                         "supported; re-save the state dict with a current PyTorch")
    else:
        result = _load_legacy(path)
    return _as_state_dict(result, path)


def _as_state_dict(result, path):
    if not isinstance(result, dict):
        raise ValueError(f"{path}: the pickle holds a {type(result).__name__}, not a state dict "
                         "(a dict of tensors)")
    state = collections.OrderedDict()
    for name, value in result.items():
        if not isinstance(name, str) or not isinstance(value, _LazyTensor):
            raise ValueError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor; "
                             "expected a plain state dict (model.state_dict())")
        state[name] = _materialise(value, name, path)
    return state


def _materialise(tensor, name, path):
    """The array that a lazy tensor stands for, after checking it stays inside its storage."""
    storage = tensor.storage
    if not isinstance(storage, _Storage) or storage.array is None:
        raise ValueError(f"{path}: tensor {name!r} refers to no storage with data")
    offset = _nonnegative_int(tensor.offset, f"storage offset of {name!r}", path)
    size, stride = tensor.size, tensor.stride
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise ValueError(f"{path}: tensor {name!r} has size {size!r} and stride {stride!r}")
    for value in size + stride:
        _nonnegative_int(value, f"size/stride of {name!r}", path)
    array = storage.array
    if 0 in size:
        out = np.empty(size, array.dtype)
    else:
        # as_strided does no bounds checking: verify that the last element is in the storage.
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= array.size:
            raise ValueError(f"{path}: tensor {name!r} (offset {offset}, size {size}, stride "
                             f"{stride}) reaches element {last} of a storage of {array.size}")
        view = np.lib.stride_tricks.as_strided(
            array[offset:], shape=size, strides=[s * array.itemsize for s in stride],
            writeable=False)
        out = np.array(view, order="C", copy=True)
    if storage.type.name == "BFloat16Storage":
        # bfloat16 is the top half of a float32: shift the 16 bits into place.
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out.astype(out.dtype.newbyteorder("="), copy=False)


# --------------------------------------------------------------------------------------------
# Zip container (PyTorch >= 1.6)
# --------------------------------------------------------------------------------------------

def _load_zip(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path}: a damaged or truncated zip file ({error})") from None
    with archive:
        pickles = [name for name in archive.namelist()
                   if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: a zip file but not a PyTorch one (expected one "
                             f"'<name>/data.pkl', found {pickles or 'none'})")
        prefix = pickles[0][:-len("data.pkl")]
        order = "<"
        if f"{prefix}byteorder" in archive.namelist():
            text = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if text not in ("little", "big"):
                raise ValueError(f"{path}: unknown byte order {text!r}")
            order = "<" if text == "little" else ">"
        storages = {}

        def persistent_load(pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise ValueError(f"{path}: unexpected persistent id {pid!r}")
            _, storage_type, key, _location, numel = pid
            storage_type = _storage_type(storage_type, path)
            numel = _nonnegative_int(numel, "storage size", path)
            if key not in storages:
                member = f"{prefix}data/{key}"
                try:
                    info = archive.getinfo(member)
                except KeyError:
                    raise ValueError(f"{path}: storage {key!r} has no member {member}") from None
                expected = numel * storage_type.dtype.itemsize
                if info.file_size != expected:
                    raise ValueError(f"{path}: {member} holds {info.file_size} bytes, "
                                     f"expected {numel} x {storage_type.dtype.itemsize} = "
                                     f"{expected}")
                storage = _Storage(storage_type, numel, key)
                storage.array = np.frombuffer(archive.read(member),
                                              storage_type.dtype.newbyteorder(order))
                storages[key] = storage
            return storages[key]

        with archive.open(pickles[0]) as stream:
            return _unpickle(_RestrictedUnpickler(stream, path, persistent_load), path,
                             "data.pkl")


# --------------------------------------------------------------------------------------------
# Legacy container (PyTorch < 1.6)
# --------------------------------------------------------------------------------------------

def _load_legacy(path):
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        try:
            magic = _RestrictedUnpickler(stream, path).load()
        except UnsafePickleError:
            raise
        except Exception:  # any garbage: the unpickler raises all sorts of errors
            magic = None
        if magic != TORCH_LEGACY_MAGIC:
            raise ValueError(f"{path}: not a PyTorch file (neither a zip archive nor a legacy "
                             "torch.save stream)")
        protocol = _unpickle(_RestrictedUnpickler(stream, path), path, "header")
        sys_info = _unpickle(_RestrictedUnpickler(stream, path), path, "header")
        if protocol != _LEGACY_PROTOCOL_VERSION:
            raise ValueError(f"{path}: legacy protocol version {protocol!r} is not supported "
                             f"(expected {_LEGACY_PROTOCOL_VERSION})")
        if not isinstance(sys_info, dict):
            raise ValueError(f"{path}: damaged header (sys_info is {sys_info!r})")
        order = "<" if sys_info.get("little_endian", True) else ">"
        storages = {}

        def persistent_load(pid):
            if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
                kind = pid[0] if isinstance(pid, tuple) and pid else pid
                raise ValueError(f"{path}: unexpected persistent id {kind!r} (only plain "
                                 "state dicts can be read, not pickled modules)")
            _, storage_type, key, _location, numel, view = pid
            storage_type = _storage_type(storage_type, path)
            numel = _nonnegative_int(numel, "storage size", path)
            if key not in storages:
                if numel * storage_type.dtype.itemsize > file_size:
                    raise ValueError(f"{path}: storage {key!r} claims {numel} elements, more "
                                     "than the file holds")
                storage = _Storage(storage_type, numel, key)
                storage.array = np.empty(numel, storage_type.dtype.newbyteorder(order))
                storages[key] = storage
            storage = storages[key]
            if view is None:
                return storage
            # A view of part of a root storage (rare): (view_key, offset, view_size).
            _view_key, view_offset, view_size = view
            view_offset = _nonnegative_int(view_offset, "view offset", path)
            view_size = _nonnegative_int(view_size, "view size", path)
            if view_offset + view_size > storage.numel:
                raise ValueError(f"{path}: a storage view exceeds storage {key!r}")
            part = _Storage(storage_type, view_size, key)
            part.array = storage.array[view_offset:view_offset + view_size]
            return part

        result = _unpickle(_RestrictedUnpickler(stream, path, persistent_load), path, "pickle")
        keys = _unpickle(_RestrictedUnpickler(stream, path), path, "storage key list")
        if not isinstance(keys, list) or set(keys) != set(storages):
            raise ValueError(f"{path}: the storage key list does not match the pickle")
        count = struct.Struct(order + "q")
        for key in keys:
            storage = storages[key]
            header = stream.read(count.size)
            if len(header) != count.size:
                raise ValueError(f"{path}: truncated: storage {key!r} is missing "
                                 f"(file ends at byte {stream.tell()} of {file_size})")
            (numel,) = count.unpack(header)
            if numel != storage.numel:
                raise ValueError(f"{path}: storage {key!r} has {numel} elements in the data "
                                 f"but {storage.numel} in the pickle")
            buffer = storage.array.view(np.uint8)
            if stream.readinto(buffer) != buffer.size:
                raise ValueError(f"{path}: truncated: storage {key!r} needs {buffer.size} bytes "
                                 f"from byte {stream.tell()}, the file has {file_size}")
        if stream.tell() != file_size:
            raise ValueError(f"{path}: {file_size - stream.tell()} unexpected bytes after the "
                             f"last storage (at byte {stream.tell()})")
    return result
