"""Tests for the pure-Python protobuf / Caffe readers and the paper-LeNet converter.

Synthetic files are built with a tiny protobuf encoder below, in both Caffe layouts (V1 `layers`
and V2 `layer`). The converted LeNet is checked against an independent NumPy forward pass in
Caffe's own NCHW layout, so the OIHW->HWIO and flatten-order conversions are really exercised.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers.data.mnist import BUNDLED_DIR, load_mnist
from jaxfool.classifiers.nets.lenet import (
    LeNet,
    lenet_from_caffemodel,
    lenet_params_from_caffemodel,
)
from jaxfool.classifiers.weights import protobuf as pb
from jaxfool.classifiers.weights.caffemodel import (
    CaffeFormatError,
    read_binaryproto,
    read_caffemodel,
)

from .conftest import SHARED_DATA

PAPER_DIR = SHARED_DATA / "paper-lenet"


# --- a tiny protobuf encoder ------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32/int64 are written as 10-byte two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def f_varint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def f_bytes(number: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return key(number, 2) + varint(len(payload)) + payload


def f_packed_floats(number: int, values: np.ndarray) -> bytes:
    return f_bytes(number, np.asarray(values, "<f4").tobytes())


def f_unpacked_floats(number: int, values: np.ndarray) -> bytes:
    return b"".join(key(number, 5) + v.tobytes() for v in np.asarray(values, "<f4").ravel())


def blob_v1(a: np.ndarray) -> bytes:
    """Legacy BlobProto: num/channels/height/width (leading 1s) + packed data."""
    shape = (1,) * (4 - a.ndim) + a.shape
    dims = b"".join(f_varint(i + 1, d) for i, d in enumerate(shape))
    return dims + f_packed_floats(5, a.ravel())


def blob_v2(a: np.ndarray) -> bytes:
    """BlobProto with a BlobShape (packed int64 dims) + packed data."""
    dims = f_bytes(1, b"".join(varint(d) for d in a.shape))
    return f_bytes(7, dims) + f_packed_floats(5, a.ravel())


V1_TYPES = {"Data": 5, "Convolution": 4, "Pooling": 17, "InnerProduct": 14, "ReLU": 18}


def layer_v1(name: str, type_: str, blobs: list[np.ndarray]) -> bytes:
    msg = f_bytes(2, "bottom") + f_bytes(3, name) + f_bytes(4, name) + f_varint(5, V1_TYPES[type_])
    msg += b"".join(f_bytes(6, blob_v1(b)) for b in blobs)
    return msg + f_unpacked_floats(7, np.ones(len(blobs)))  # blobs_lr, skipped by the reader


def layer_v2(name: str, type_: str, blobs: list[np.ndarray]) -> bytes:
    msg = f_bytes(1, name) + f_bytes(2, type_) + f_bytes(3, "bottom") + f_bytes(4, name)
    return msg + b"".join(f_bytes(7, blob_v2(b)) for b in blobs)


def net(layers: list[tuple[str, str, list[np.ndarray]]], layout: str) -> bytes:
    number, encode = (2, layer_v1) if layout == "v1" else (100, layer_v2)
    return f_bytes(1, "LeNet") + b"".join(f_bytes(number, encode(*layer)) for layer in layers)


# --- synthetic LeNet --------------------------------------------------------------------------


def random_lenet_blobs(layout: str, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Caffe-shaped LeNet blobs; V1 stores biases as (1,1,1,n) and IP weights as (1,1,out,in)."""
    rng = np.random.default_rng(seed)

    def normal(shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    blobs = {
        "conv1": [normal((20, 1, 5, 5), 0.3), normal((20,), 0.1)],
        "conv2": [normal((50, 20, 5, 5), 0.05), normal((50,), 0.1)],
        "ip1": [normal((500, 800), 0.03), normal((500,), 0.1)],
        "ip2": [normal((10, 500), 0.1), normal((10,), 0.1)],
    }
    if layout == "v1":
        blobs = {k: [w.reshape((1,) * (4 - w.ndim) + w.shape), b.reshape(1, 1, 1, -1)]
                 for k, (w, b) in blobs.items()}  # fmt: skip
    return blobs


def lenet_layers(blobs):
    return [
        ("mnist", "Data", []),
        ("conv1", "Convolution", blobs["conv1"]),
        ("pool1", "Pooling", []),
        ("conv2", "Convolution", blobs["conv2"]),
        ("pool2", "Pooling", []),
        ("ip1", "InnerProduct", blobs["ip1"]),
        ("relu1", "ReLU", []),
        ("ip2", "InnerProduct", blobs["ip2"]),
    ]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def caffe_forward(x_nchw: np.ndarray, blobs: dict[str, list[np.ndarray]]) -> np.ndarray:
    """Independent float64 LeNet forward pass in Caffe's NCHW layout, from the raw Caffe blobs."""

    def conv(x, w, b):
        w = w.astype(np.float64)
        windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # N,C,H',W',kh,kw
        return np.einsum("nchwij,ocij->nohw", windows, w) + b.reshape(1, -1, 1, 1)

    def pool(x):  # max 2x2 stride 2 (ceil and floor agree at these sizes)
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    def dense(x, w, b):
        return x @ w.reshape(w.shape[-2:]).T.astype(np.float64) + b.reshape(-1)

    x = pool(conv(x_nchw.astype(np.float64), *blobs["conv1"]))
    x = pool(conv(x, *blobs["conv2"]))
    x = x.reshape(len(x), -1)  # Caffe flattens C, H, W
    x = np.maximum(dense(x, *blobs["ip1"]), 0)
    return dense(x, *blobs["ip2"])


# --- protobuf reader --------------------------------------------------------------------------


def test_iter_fields_decodes_all_wire_types():
    data = f_varint(1, 300) + key(2, 1) + b"12345678" + f_bytes(3, "abc") + key(4, 5) + b"wxyz"
    fields = list(pb.iter_fields(data))
    assert [(f.number, f.wire_type) for f in fields] == [(1, 0), (2, 1), (3, 2), (4, 5)]
    assert fields[0].value == 300
    assert [bytes(f.value) for f in fields[1:]] == [b"12345678", b"abc", b"wxyz"]
    assert fields[2].offset == data.index(b"abc")
    assert pb.as_signed(list(pb.iter_fields(f_varint(1, -5)))[0].value) == -5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x08", "truncated varint at byte 1"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "varint longer than 10 bytes at byte 1"),
        (key(1, 2) + varint(5) + b"abc", "truncated field 1 at byte 0: needs 5 bytes, 3 left"),
        (key(1, 1) + b"1234", "truncated field 1"),
        (key(1, 3), "group"),
        (key(1, 4), "group"),
        (key(1, 6), "invalid wire type 6"),
        (key(0, 0) + b"\x00", "field number 0"),
    ],
)
def test_iter_fields_rejects_malformed_data(data, message):
    with pytest.raises(pb.ProtobufDecodeError, match=message):
        list(pb.iter_fields(data))


def test_repeated_floats_packed_and_unpacked():
    a = np.arange(7, dtype=np.float32) / 3
    mixed = f_packed_floats(5, a[:3]) + f_unpacked_floats(5, a[3:])
    np.testing.assert_array_equal(pb.repeated_floats(pb.iter_fields(mixed)), a)
    doubles = f_bytes(8, a.astype("<f8").tobytes())
    out = pb.repeated_floats(pb.iter_fields(doubles), np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, a.astype(np.float64))
    np.testing.assert_array_equal(pb.packed_float32(a.astype("<f4").tobytes()), a)
    with pytest.raises(pb.ProtobufDecodeError, match="not a multiple of 4"):
        pb.repeated_floats(pb.iter_fields(f_bytes(5, b"12345")))
    packed = f_bytes(1, varint(3) + varint(2**40)) + f_varint(1, 7)
    assert pb.repeated_varints(pb.iter_fields(packed)) == [3, 2**40, 7]


# --- caffemodel round trips -------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_read_caffemodel_round_trip(tmp_path, layout):
    blobs = random_lenet_blobs(layout)
    path = write(tmp_path, f"lenet_{layout}.caffemodel", net(lenet_layers(blobs), layout))
    layers = read_caffemodel(path)
    expected = lenet_layers(blobs)
    assert [(lay.name, lay.type) for lay in layers] == [(n, t) for n, t, _ in expected]
    for layer, (_, _, want) in zip(layers, expected, strict=True):
        assert len(layer.blobs) == len(want)
        for got, ref in zip(layer.blobs, want, strict=True):
            assert got.dtype == np.float32 and got.shape == ref.shape
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_lenet_matches_numpy_caffe_forward(tmp_path, layout):
    blobs = random_lenet_blobs(layout, seed=1)
    path = write(tmp_path, "lenet.caffemodel", net(lenet_layers(blobs), layout))
    model, variables = lenet_from_caffemodel(path)
    assert model.num_classes == 10
    x = np.random.default_rng(2).random((3, 1, 28, 28), dtype=np.float32)
    logits = np.asarray(model.apply(variables, x.transpose(0, 2, 3, 1)))
    reference = caffe_forward(x, blobs)
    assert np.abs(reference).max() > 0.5  # non-trivial outputs
    np.testing.assert_allclose(logits, reference, rtol=1e-5, atol=1e-5)


def test_lenet_number_of_classes_comes_from_the_file(tmp_path):
    blobs = random_lenet_blobs("v2")
    rng = np.random.default_rng(3)
    blobs["ip2"] = [rng.standard_normal((7, 500)).astype(np.float32), np.zeros(7, np.float32)]
    path = write(tmp_path, "lenet7.caffemodel", net(lenet_layers(blobs), "v2"))
    model, variables = lenet_from_caffemodel(path)
    assert model.num_classes == 7
    assert variables["params"]["ip2"]["kernel"].shape == (500, 7)


def test_read_binaryproto_round_trip(tmp_path):
    mean = np.random.default_rng(4).random((1, 1, 28, 28), dtype=np.float32) * 255
    np.testing.assert_array_equal(read_binaryproto(write(tmp_path, "m_v1", blob_v1(mean))), mean)
    np.testing.assert_array_equal(read_binaryproto(write(tmp_path, "m_v2", blob_v2(mean))), mean)
    as_double = f_bytes(7, f_bytes(1, varint(3))) + f_bytes(8, np.arange(3.0).tobytes())
    out = read_binaryproto(write(tmp_path, "m_double", as_double))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0, 1, 2])


# --- errors -----------------------------------------------------------------------------------


def error_for(fn, path: Path) -> str:
    with pytest.raises(CaffeFormatError) as info:
        fn(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message
    return message


def test_errors_name_the_file(tmp_path):
    good = net(lenet_layers(random_lenet_blobs("v1")), "v1")
    truncated = write(tmp_path, "truncated.caffemodel", good[: len(good) // 2])
    assert "truncated" in error_for(read_caffemodel, truncated)
    garbage = write(tmp_path, "garbage.caffemodel", b"GIF89a this is not protobuf \xff\xfe")
    assert "corrupt" in error_for(read_caffemodel, garbage)
    assert "empty file" in error_for(read_caffemodel, write(tmp_path, "empty.caffemodel", b""))
    assert "no such file" in error_for(read_caffemodel, tmp_path / "missing.caffemodel")
    assert "no such file" in error_for(read_binaryproto, tmp_path / "missing.binaryproto")
    assert "cannot read" in error_for(read_caffemodel, tmp_path)


def test_damaged_files_raise_only_caffe_format_error(tmp_path):
    """Every prefix and random byte corruptions of small files: parse, or CaffeFormatError."""
    conv = [np.ones((2, 1, 2, 2), np.float32), np.ones(2, np.float32)]
    files = [
        net([("c", "Convolution", conv), ("r", "ReLU", [])], layout) for layout in ("v1", "v2")
    ]
    rng = np.random.default_rng(5)
    cases = [data[:cut] for data in files for cut in range(1, len(data))]
    for _ in range(300):
        damaged = np.frombuffer(files[rng.integers(2)], np.uint8).copy()
        damaged[rng.integers(len(damaged), size=3)] = rng.integers(256, size=3)
        cases.append(damaged.tobytes())
    path = tmp_path / "damaged"
    for data in cases:
        path.write_bytes(data)
        for read in (read_caffemodel, read_binaryproto):
            try:
                read(path)
            except CaffeFormatError as e:
                assert str(path) in str(e)


def test_error_not_a_net_or_no_weights(tmp_path):
    mean = write(tmp_path, "mean.binaryproto", blob_v1(np.zeros((1, 1, 2, 2), np.float32)))
    assert "not a Caffe NetParameter" in error_for(read_caffemodel, mean)
    no_layers = write(tmp_path, "name_only.caffemodel", f_bytes(1, "LeNet"))
    assert "not a Caffe NetParameter" in error_for(read_caffemodel, no_layers)
    no_weights = write(tmp_path, "deploy.caffemodel", net([("relu", "ReLU", [])], "v2"))
    assert "no layer has weights" in error_for(read_caffemodel, no_weights)


def test_error_blob_length_mismatch(tmp_path):
    bad_blob = f_bytes(7, f_bytes(1, varint(2) + varint(3))) + f_packed_floats(5, np.zeros(5))
    layer = f_bytes(1, "ip9") + f_bytes(2, "InnerProduct") + f_bytes(7, bad_blob)
    path = write(tmp_path, "bad.caffemodel", f_bytes(100, layer))
    message = error_for(read_caffemodel, path)
    assert "layer 'ip9' blob 0 holds 5 values but its shape (2, 3) needs 6" in message
    legacy = f_varint(1, 1) + f_varint(2, 1) + f_varint(3, 2) + f_varint(4, 2)
    mean = write(tmp_path, "bad_mean.binaryproto", legacy + f_packed_floats(5, np.zeros(3)))
    assert "holds 3 values but its shape (1, 1, 2, 2) needs 4" in error_for(read_binaryproto, mean)


def test_lenet_loader_errors(tmp_path):
    blobs = random_lenet_blobs("v2")
    layers = [layer for layer in lenet_layers(blobs) if layer[0] != "conv2"]
    path = write(tmp_path, "no_conv2.caffemodel", net(layers, "v2"))
    assert "no layer 'conv2' with weights" in error_for(lenet_params_from_caffemodel, path)

    blobs["ip1"] = [np.zeros((400, 800), np.float32), np.zeros(400, np.float32)]
    path = write(tmp_path, "ip1_400.caffemodel", net(lenet_layers(blobs), "v2"))
    with pytest.raises(WeightsFileError, match=r"ip1/bias has shape \(400,\).*expects \(500,\)"):
        lenet_params_from_caffemodel(path)


# --- the paper's own trained LeNet ------------------------------------------------------------


def paper_file(name: str) -> Path:
    path = PAPER_DIR / name
    if not path.is_file():
        pytest.skip(f"paper LeNet file not available: {path}")
    return path


def test_paper_lenet_classifies_mnist():
    variables = lenet_params_from_caffemodel(paper_file("lenet_iter_10000"))
    assert sum(a.size for a in jax.tree.leaves(variables)) == 431_080
    images, labels = load_mnist(BUNDLED_DIR, "test")
    assert len(images) == 2000
    apply = jax.jit(LeNet().apply)
    x = (images[..., None] / 256).astype(np.float32)
    accuracy = float((np.asarray(apply(variables, x)).argmax(1) == labels).mean())
    print(f"paper LeNet, x/256: accuracy {accuracy:.4f} on {len(labels)} test digits")
    assert accuracy >= 0.98


def test_paper_mnist_mean():
    mean = read_binaryproto(paper_file("mnist_mean.binaryproto"))
    assert mean.shape == (1, 1, 28, 28) and mean.dtype == np.float32
    assert mean.min() == 0
    assert mean.max() == pytest.approx(139.6, abs=0.1)
    assert mean.mean() == pytest.approx(33.3, abs=0.05)


def test_layout_rules_are_shared_and_compute_what_caffe_and_torch_compute():
    """One set of layout rules (torch_layout) serves the Caffe, torchvision-AlexNet and torch
    converters: a dense kernel with a C, H, W flatten applied to NHWC activations equals the
    (out, in) matrix on the C, H, W flatten, and an OIHW kernel correlates like Caffe's."""
    from jaxfool.classifiers.nets import alexnet, caffenet, lenet
    from jaxfool.classifiers.weights import torch_layout

    for net in (lenet, caffenet, alexnet):
        assert net.dense_kernel is torch_layout.dense_kernel
        assert net.conv_kernel is torch_layout.conv_kernel
    rng = np.random.default_rng(0)
    c, h, w, out = 3, 4, 5, 7
    weights = rng.standard_normal((out, c * h * w)).astype(np.float32)
    x_chw = rng.standard_normal((c, h, w)).astype(np.float32)
    kernel = torch_layout.dense_kernel(weights, (c, h, w))
    np.testing.assert_allclose(
        x_chw.transpose(1, 2, 0).reshape(-1) @ kernel, weights @ x_chw.reshape(-1), rtol=1e-5
    )
    np.testing.assert_array_equal(torch_layout.dense_kernel(weights), weights.T)
    # OIHW kernel, valid cross-correlation at one output position, both layouts
    oihw = rng.standard_normal((out, c, 3, 3)).astype(np.float32)
    hwio = torch_layout.conv_kernel(oihw)
    assert hwio.shape == (3, 3, c, out)
    patch_chw = x_chw[:, :3, :3]
    np.testing.assert_allclose(
        np.einsum("hwi,hwio->o", patch_chw.transpose(1, 2, 0), hwio),
        np.einsum("ihw,oihw->o", patch_chw, oihw),
        rtol=1e-5,
    )
    # a misshaped blob is passed on, for the caller's shape check to name
    assert torch_layout.conv_kernel(weights) is weights
