"""A safe, pure-Python reader for PyTorch `.pth`/`.pt` state-dict files (no torch needed).

Both formats `torch.save` writes are supported (`torch/serialization.py`):

- legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): pickles of the magic number,
  protocol and sys-info, then the object pickle, then the sorted storage keys, then one record per
  key: an int64 little-endian element count and the raw little-endian bytes;
- zip (the default since 1.6): `<folder>/data.pkl` plus one raw entry `<folder>/data/<key>` per
  storage, in the writer's byte order (`<folder>/byteorder`, little when absent).

The pickle is read by an unpickler that only knows the handful of globals a tensor state dict
needs and rebuilds tensors as placeholders; nothing from the file is ever executed. Tensors become
NumPy arrays built from their storage, offset, size and stride, so shared storages and strided
views come out exactly as `torch.load` gives them.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from jaxfool.base.fileio import read_bytes
from jaxfool.base.npz import WeightsFileError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_MAX_EXPANDED_BYTES = 1 << 32  # a stride-0 view may repeat its storage, but not beyond 4 GiB

_DTYPES = {
    "Double": np.dtype(np.float64),
    "Float": np.dtype(np.float32),
    "Half": np.dtype(np.float16),
    "BFloat16": np.dtype(ml_dtypes.bfloat16),
    "Long": np.dtype(np.int64),
    "Int": np.dtype(np.int32),
    "Short": np.dtype(np.int16),
    "Char": np.dtype(np.int8),
    "Byte": np.dtype(np.uint8),
    "Bool": np.dtype(np.bool_),
}


class TorchFileError(WeightsFileError):
    """A torch file is missing, corrupt, unsafe, or not a tensor state dict (a `ValueError`)."""


class _Bad(Exception):
    """A problem found while decoding; re-raised as `TorchFileError` with the path."""


class _Sealed:
    """Base of the reader's own objects: the pickle may not set their state (`BUILD`)."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise _Bad(f"refused to set the state of a {type(self).__name__[1:]}")


class _StorageType(_Sealed):
    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


class _StorageRef(_Sealed):
    """A persistent id: the elements [start, start + size) of the root storage `key`."""

    __slots__ = ("key", "dtype", "start", "size")

    def __init__(self, key: str, dtype: np.dtype, start: int, size: int):
        self.key, self.dtype, self.start, self.size = key, dtype, start, size


class _TensorRef(_Sealed):
    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage: _StorageRef, offset: int, shape: tuple, stride: tuple):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride


class _OrderedDict(dict):
    """`collections.OrderedDict`; its `BUILD` state (the `_metadata` attribute) is dropped."""

    def __setstate__(self, state: Any) -> None:
        pass


def _is_int(x: Any) -> bool:
    """A non-negative int (sizes, strides, offsets and counts are never negative)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise _Bad("_rebuild_tensor_v2 called without a storage")
    ok = isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
    if not (ok and _is_int(storage_offset) and all(map(_is_int, size + stride))):
        raise _Bad(
            f"bad tensor geometry: offset {storage_offset!r} size {size!r} stride {stride!r}"
        )
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored) -> _TensorRef:
    if not isinstance(data, _TensorRef):
        raise _Bad("_rebuild_parameter called without a tensor")
    return data


_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "UntypedStorage"): _StorageType(np.dtype(np.uint8)),
    ("torch.storage", "UntypedStorage"): _StorageType(np.dtype(np.uint8)),
    **{("torch", f"{name}Storage"): _StorageType(dt) for name, dt in _DTYPES.items()},
}
ALLOWED_GLOBALS = tuple(f"{module}.{name}" for module, name in _GLOBALS)


class _Unpickler(pickle.Unpickler):
    """Resolves only `_GLOBALS`; records each storage's dtype and element count by key."""

    def __init__(self, data: bytes | io.BytesIO, legacy: bool):
        super().__init__(
            data if isinstance(data, io.BytesIO) else io.BytesIO(data), encoding="utf-8"
        )
        self.legacy = legacy
        self.storages: dict[str, tuple[np.dtype, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _GLOBALS:
            raise _Bad(f"refused pickle global {module}.{name} (not part of a tensor state dict)")
        return _GLOBALS[module, name]

    def persistent_load(self, pid: Any) -> _StorageRef:
        n = 6 if self.legacy else 5
        if not (isinstance(pid, tuple) and len(pid) == n and pid[0] == "storage"):
            raise _Bad(f"unsupported persistent id {str(pid)[:80]}")
        _, stype, key, _location, numel = pid[:5]
        if not (isinstance(stype, _StorageType) and isinstance(key, str) and _is_int(numel)):
            raise _Bad(f"bad storage record {str(pid)[:80]}")
        if self.storages.setdefault(key, (stype.dtype, numel)) != (stype.dtype, numel):
            raise _Bad(f"storage {key!r} is declared twice with different types or sizes")
        start, size = 0, numel
        if n == 6 and pid[5] is not None:  # legacy storage view: (view_key, offset, size)
            view = pid[5]
            if not (isinstance(view, tuple) and len(view) == 3 and all(map(_is_int, view[1:]))):
                raise _Bad(f"bad storage view {str(view)[:80]}")
            start, size = view[1:]
            if start + size > numel:
                raise _Bad(f"storage view {view[0]!r} exceeds storage {key!r}")
        return _StorageRef(key, stype.dtype, start, size)


def _tensor(t: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    base = storages[t.storage.key][t.storage.start : t.storage.start + t.storage.size]
    count = math.prod(t.shape)
    if count == 0:
        if t.offset > base.size:
            raise _Bad(f"empty tensor offset {t.offset} beyond its storage of {base.size}")
        return np.zeros(t.shape, base.dtype)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride, strict=True))
    if last >= base.size:
        raise _Bad(
            f"tensor of size {t.shape} stride {t.stride} offset {t.offset} "
            f"exceeds its storage of {base.size} elements"
        )
    if count > base.size and count * base.itemsize > _MAX_EXPANDED_BYTES:
        raise _Bad(f"tensor of size {t.shape} is absurdly larger than its storage")
    strides = tuple(s * base.itemsize for s in t.stride)
    view = np.lib.stride_tricks.as_strided(base[t.offset :], t.shape, strides, writeable=False)
    return view.copy()


def _materialize(obj: Any, storages: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _TensorRef):
        return _tensor(obj, storages)
    if isinstance(obj, _StorageRef):
        return storages[obj.key][obj.start : obj.start + obj.size].copy()
    if isinstance(obj, _StorageType):
        raise _Bad("a bare storage type is not data")
    if isinstance(obj, dict):
        return {k: _materialize(v, storages) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, storages) for v in obj)
    return obj


def _load_legacy(data: bytes) -> Any:
    f = io.BytesIO(data)
    if _Unpickler(f, legacy=True).load() != LEGACY_MAGIC:
        raise _Bad("not a torch file (bad magic number)")
    if (protocol := _Unpickler(f, legacy=True).load()) != LEGACY_PROTOCOL:
        raise _Bad(f"unsupported legacy protocol {protocol!r}")
    if not isinstance(_Unpickler(f, legacy=True).load(), dict):
        raise _Bad("bad sys-info record")
    unpickler = _Unpickler(f, legacy=True)
    obj = unpickler.load()
    keys = _Unpickler(f, legacy=True).load()
    if not (isinstance(keys, list) and sorted(keys) == sorted(unpickler.storages)):
        raise _Bad("the storage key list does not match the storages the pickle uses")
    storages, pos = {}, f.tell()
    for key in keys:
        dtype, numel = unpickler.storages[key]
        if pos + 8 > len(data):
            raise _Bad(f"truncated: storage {key!r} is missing")
        count = int.from_bytes(data[pos : pos + 8], "little", signed=True)
        end = pos + 8 + numel * dtype.itemsize
        if count != numel:
            raise _Bad(f"storage {key!r} holds {count} elements, but {numel} were declared")
        if end > len(data):
            raise _Bad(
                f"truncated: storage {key!r} needs {end - pos - 8} bytes, "
                f"the file holds {max(len(data) - pos - 8, 0)}"
            )
        storages[key] = np.frombuffer(memoryview(data)[pos + 8 : end], dtype)
        pos = end
    return _materialize(obj, storages)


def _load_zip(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        pickles = [n for n in zf.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pickles) != 1:
            raise _Bad(f"a torch zip file holds one <folder>/data.pkl, this one {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        unpickler = _Unpickler(zf.read(pickles[0]), legacy=False)
        obj = unpickler.load()
        names = set(zf.namelist())
        order = (
            zf.read(prefix + "byteorder").strip() if prefix + "byteorder" in names else b"little"
        )
        if order not in (b"little", b"big"):
            raise _Bad(f"unknown byte order {order[:20]!r}")
        storages = {}
        for key, (dtype, numel) in unpickler.storages.items():
            name, nbytes = f"{prefix}data/{key}", numel * dtype.itemsize
            if name not in names:
                raise _Bad(f"storage entry {name!r} is missing")
            if zf.getinfo(name).file_size < nbytes:
                raise _Bad(
                    f"storage {key!r} declares {nbytes} bytes, "
                    f"the file holds {zf.getinfo(name).file_size}"
                )
            arr = np.frombuffer(zf.read(name), dtype, count=numel)
            if order == b"big" and dtype.itemsize > 1:
                arr = arr.view(f"<u{dtype.itemsize}").byteswap().view(dtype)
            storages[key] = arr
    return _materialize(obj, storages)


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """Reads a torch `.pth`/`.pt` file (legacy or zip) into {name: numpy array}, in file order
    (`state_dict.load_state_dict` reads either this or a `.safetensors` file).

    Nested containers come back as they were saved (dicts, lists, tuples; `OrderedDict`s become
    plain dicts, dropping `_metadata`). Raises `TorchFileError` (one line, starting with the path)
    for a missing, truncated, corrupt or unsafe file.
    """
    path = Path(path)
    data = read_bytes(path, TorchFileError)
    try:
        if not data:
            raise _Bad("empty file")
        if data.startswith(b"PK\x03\x04"):
            obj = _load_zip(data)
        elif data.startswith(b"\x80\x02\x8a\x0a"):
            obj = _load_legacy(data)
        else:
            raise _Bad("not a torch file (neither a zip archive nor a legacy torch pickle)")
    except _Bad as e:
        raise TorchFileError(f"{path}: {' '.join(str(e).split())}") from None
    except Exception as e:  # corrupt input surfaces as many exception types; report them all
        msg = " ".join(str(e).split())[:200]
        raise TorchFileError(f"{path}: corrupt torch file ({type(e).__name__}: {msg})") from None
    if not isinstance(obj, dict):
        raise TorchFileError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return obj
