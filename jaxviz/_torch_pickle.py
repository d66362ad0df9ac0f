"""Read `torch.save` checkpoints into NumPy without torch and without running pickled code.

A `.pth` file is a pickle, and unpickling runs whatever callables the file names. This reader
allows only what a state dict needs: `collections.OrderedDict`, the `torch.*Storage` type
markers and `torch._utils._rebuild_tensor{,_v2}` / `_rebuild_parameter` (re-implemented here on
NumPy). Anything else is refused with a `WeightsError` before it is called.

Both container formats are read:
- zip (torch >= 1.6): `<archive>/data.pkl` holds the pickle; storage `k` is the raw bytes of
  `<archive>/data/k`; `<archive>/byteorder` says little/big endian.
- legacy (torch < 1.6, e.g. torchvision's 2017 VGG files): five pickles in a row (magic
  number, protocol version, system info, the object, the sorted storage keys), then for each
  storage key an int64 element count and the raw bytes.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _dtype(name: str, little_endian: bool) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes  # a JAX dependency; NumPy has no bfloat16 of its own

        dt = np.dtype(ml_dtypes.bfloat16)
    else:
        dt = np.dtype(name)
    return dt.newbyteorder("<" if little_endian else ">") if dt.itemsize > 1 else dt


class _StorageType:
    """What `torch.FloatStorage` & co. unpickle to: just the element type."""

    def __init__(self, name: str):
        self.name = name
        self.dtype_name = _STORAGE_DTYPES[name]


class _Storage:
    """A flat buffer; `array` is filled once its bytes have been read (legacy files: after the pickle)."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel = dtype, numel
        self.array: np.ndarray | None = None


class _StorageView:
    """Legacy `view_metadata`: elements `[offset, offset + size)` of a root storage."""

    def __init__(self, root: _Storage, offset: int, size: int):
        self.root, self.offset, self.size = root, offset, size
        self.dtype = root.dtype

    @property
    def array(self) -> np.ndarray | None:
        if self.root.array is None:
            return None
        return self.root.array[self.offset : self.offset + self.size]


class _LazyTensor:
    """A tensor whose storage may not be read yet; `_materialize` turns it into an array."""

    def __init__(self, storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _ints(values: Any, what: str, path: Path) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) for v in values):
        raise WeightsError(f"{path}: malformed tensor {what} {values!r}: not a valid PyTorch checkpoint")
    return tuple(values)


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals a state dict needs (see the module docstring)."""

    def __init__(self, file, path: Path, little_endian: bool, storages: dict, load_zip_record=None):
        super().__init__(file)
        self.path = path
        self.little_endian = little_endian
        self.storages = storages  # key -> _Storage, shared between the pickles of one file
        self.load_zip_record = load_zip_record

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return self._rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(
            f"refusing to unpickle {module}.{name} from {self.path}: a weights file should hold only "
            f"tensors and dicts, and unpickling other objects can run arbitrary code. If you trust the "
            f"file, load it with torch and save just its state dict (torch.save(model.state_dict(), ...)) "
            f"or convert it to safetensors."
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            raise WeightsError(
                f"refusing to unpickle persistent id {pid!r} from {self.path}: only storages are allowed"
            )
        if len(pid) == 5:  # zip format: ('storage', type, key, location, numel)
            _, stype, key, _location, numel = pid
            view = None
        elif len(pid) == 6:  # legacy: (..., numel, view_metadata)
            _, stype, key, _location, numel, view = pid
        else:
            raise WeightsError(f"{self.path}: malformed storage id {pid!r}")
        if not isinstance(stype, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise WeightsError(f"{self.path}: malformed storage id {pid!r}")
        key = str(key)
        storage = self.storages.get(key)
        if storage is None:
            storage = _Storage(_dtype(stype.dtype_name, self.little_endian), numel)
            if self.load_zip_record is not None:
                storage.array = self.load_zip_record(key, storage)
            self.storages[key] = storage
        if view is not None:
            view_key, offset, size = view
            return _StorageView(storage, int(offset), int(size))
        return storage

    def _rebuild_tensor(self, storage, storage_offset, size, stride, *_ignored):
        # (storage, offset, size, stride[, requires_grad, backward_hooks[, metadata]]): gradients
        # and hooks mean nothing for weights, so they are dropped.
        if not isinstance(storage, (_Storage, _StorageView)) or not isinstance(storage_offset, int):
            raise WeightsError(f"{self.path}: malformed tensor record: not a valid PyTorch checkpoint")
        return _LazyTensor(storage, storage_offset, _ints(size, "size", self.path), _ints(stride, "stride", self.path))

    def _rebuild_parameter(self, data, *_ignored):
        if not isinstance(data, _LazyTensor):
            raise WeightsError(f"{self.path}: malformed parameter record")
        return data


def _materialize(obj: Any, path: Path) -> Any:
    """Replace every `_LazyTensor` in nested dicts/lists/tuples by an owned NumPy array."""
    if isinstance(obj, _LazyTensor):
        flat = obj.storage.array
        if flat is None:
            raise WeightsError(f"{path}: a tensor's storage is missing: the file is truncated or corrupt")
        if any(n == 0 for n in obj.size):
            return np.zeros(obj.size, flat.dtype.newbyteorder("="))
        last = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride))
        if obj.offset < 0 or any(s < 0 for s in obj.stride) or last >= flat.size:
            raise WeightsError(f"{path}: a tensor points outside its storage: the file is corrupt")
        elements = math.prod(obj.size)
        if elements > flat.size - obj.offset or any(s == 0 and n > 1 for n, s in zip(obj.size, obj.stride)):
            # zero or overlapping strides: a few bytes on disk would become `elements` in memory
            raise WeightsError(
                f"{path}: a tensor of shape {obj.size} (strides {obj.stride}) repeats the "
                f"{flat.size - obj.offset} elements of its storage: weights never do; the file is "
                "corrupt or crafted"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[obj.offset :], shape=obj.size, strides=[s * flat.itemsize for s in obj.stride], writeable=False
        )
        return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")  # owned; keeps 0-d as 0-d
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v, path)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, path) for v in obj)
    return obj


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(
                f"{path}: a zip file without exactly one <archive>/data.pkl: not a torch.save checkpoint"
            )
        prefix = pickles[0].rsplit("/", 1)[0]
        names = set(zf.namelist())
        order = f"{prefix}/byteorder"
        little = zf.read(order).strip() != b"big" if order in names else True

        def record(key: str, storage: _Storage) -> np.ndarray:
            name = f"{prefix}/data/{key}"
            if name not in names:
                raise WeightsError(f"{path}: storage record {name} is missing: the file is truncated or corrupt")
            raw = zf.read(name)
            count = len(raw) // storage.dtype.itemsize
            if count < storage.numel:
                raise WeightsError(f"{path}: storage record {name} is shorter than its tensor: the file is corrupt")
            return np.frombuffer(raw, storage.dtype, count=count)

        data = zf.read(pickles[0])
        obj = _unpickle(io.BytesIO(data), path, little, {}, record)
    return _materialize(obj, path)


def _unpickle(f, path: Path, little: bool, storages: dict, record=None) -> Any:
    try:
        return _RestrictedUnpickler(f, path, little, storages, record).load()
    except WeightsError:
        raise
    except Exception as e:  # corrupt pickles raise anything from EOFError to TypeError
        raise WeightsError(
            f"{path}: cannot read the pickle ({type(e).__name__}: {e}): not a valid PyTorch checkpoint"
        ) from e


def _load_legacy(path: Path) -> Any:
    size = path.stat().st_size
    with open(path, "rb") as f:
        storages: dict[str, _Storage] = {}
        magic = _unpickle(f, path, True, storages)
        if magic != LEGACY_MAGIC:
            raise WeightsError(f"{path}: not a PyTorch checkpoint (no torch.save magic number)")
        if _unpickle(f, path, True, storages) != LEGACY_PROTOCOL:
            raise WeightsError(f"{path}: unsupported legacy PyTorch protocol version")
        sys_info = _unpickle(f, path, True, storages)
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        obj = _unpickle(f, path, little, storages)
        keys = _unpickle(f, path, little, storages)
        if not isinstance(keys, list):
            raise WeightsError(f"{path}: malformed storage key list: not a valid PyTorch checkpoint")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise WeightsError(f"{path}: storage {key!r} is listed but never used: the file is corrupt")
            count = int.from_bytes(f.read(8), "little" if little else "big", signed=True)
            nbytes = count * storage.dtype.itemsize
            if count < storage.numel or nbytes > size - f.tell():
                raise WeightsError(f"{path}: storage {key!r} is truncated: the file is corrupt or incomplete")
            storage.array = np.frombuffer(f.read(nbytes), storage.dtype, count=count)
    return _materialize(obj, path)


def load(path: str | Path) -> Any:
    """The object saved by `torch.save` (a state dict of NumPy arrays), read without torch.

    Raises `WeightsError` for anything but tensors in (ordered) dicts, lists and tuples, and
    for truncated or corrupt files. Arrays come back in the dtype they were saved in
    (bfloat16 as `ml_dtypes.bfloat16`), native byte order, C-contiguous.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        try:
            return _load_zip(path)
        except zipfile.BadZipFile as e:
            raise WeightsError(f"{path}: a damaged zip file ({e}): the download is incomplete or corrupt") from e
    if head[:1] == b"\x80":
        return _load_legacy(path)
    raise WeightsError(
        f"{path}: neither a zip nor a legacy torch.save file (tar checkpoints from PyTorch < 0.1.10 are not supported)"
    )
