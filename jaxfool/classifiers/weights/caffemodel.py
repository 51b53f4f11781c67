"""Pure-Python reader for Caffe `.caffemodel` and `.binaryproto` files, and Caffe's mean images.

No protobuf, caffe or torch: the few messages needed are decoded from the wire format
(`jaxfool.classifiers.weights.protobuf`). Field numbers are those of BVLC Caffe's `caffe.proto`:

- NetParameter: name 1, `layers` 2 (deprecated V1LayerParameter), `layer` 100 (LayerParameter).
- V1LayerParameter: name 4, type 5 (enum `LayerType`), blobs 6.
- LayerParameter: name 1, type 2 (string), blobs 7.
- BlobProto: num 1, channels 2, height 3, width 4 (legacy 4-D shape), data 5 (packed float),
  diff 6, shape 7 (BlobShape: dim 1, packed int64), double_data 8.

V1 files store InnerProduct weights as (1, 1, out, in) and biases as (1, 1, 1, n): `blob_matrix`
and `blob_vector` give them their plain shapes. Each network's converter (e.g. the paper's
LeNet, a V1 file, in `jaxfool.classifiers.nets.lenet`) picks its layers from `read_caffemodel`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxfool.base.fileio import check_readable_file, not_a_regular_file
from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers.weights import protobuf as pb

# V1LayerParameter.LayerType -> the LayerParameter type string Caffe's upgrade code maps it to
# (`src/caffe/util/upgrade_proto.cpp`, `UpgradeV1LayerType`).
V1_LAYER_TYPES = {
    0: "NONE",
    1: "Accuracy",
    2: "BNLL",
    3: "Concat",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    7: "EuclideanLoss",
    8: "Flatten",
    9: "HDF5Data",
    10: "HDF5Output",
    11: "Im2col",
    12: "ImageData",
    13: "InfogainLoss",
    14: "InnerProduct",
    15: "LRN",
    16: "MultinomialLogisticLoss",
    17: "Pooling",
    18: "ReLU",
    19: "Sigmoid",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    23: "TanH",
    24: "WindowData",
    25: "Eltwise",
    26: "Power",
    27: "SigmoidCrossEntropyLoss",
    28: "HingeLoss",
    29: "MemoryData",
    30: "ArgMax",
    31: "Threshold",
    32: "DummyData",
    33: "Slice",
    34: "MVN",
    35: "AbsVal",
    36: "Silence",
    37: "ContrastiveLoss",
    38: "Exp",
    39: "Deconvolution",
}

# Layer field numbers (name, type, blobs) in each layout, keyed by the NetParameter field.
_V1_LAYERS, _V2_LAYERS = 2, 100
_LAYER_FIELDS = {_V1_LAYERS: (4, 5, 6), _V2_LAYERS: (1, 2, 7)}


class CaffeFormatError(WeightsFileError):
    """A Caffe file is missing, corrupt, or not the expected message (a `ValueError`)."""


class _Problem(ValueError):
    """A format problem found while decoding; re-raised as `CaffeFormatError` with the path."""


@dataclass
class CaffeLayer:
    """One layer of a NetParameter: its name, V2 type string and parameter blobs (float32)."""

    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise CaffeFormatError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CaffeFormatError(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise CaffeFormatError(f"{path}: empty file")
    return data


def _decode(path: Path, parse: Any, data: bytes) -> Any:
    """Runs `parse(data)`, turning every decoding problem into a one-line `CaffeFormatError`."""
    try:
        return parse(data)
    except pb.ProtobufDecodeError as e:
        raise CaffeFormatError(
            f"{path}: truncated or corrupt protobuf ({e}; file is {len(data)} bytes)"
        ) from None
    except _Problem as e:
        raise CaffeFormatError(f"{path}: {e}") from None


def _non_negative(value: int, what: str) -> int:
    value = pb.as_signed(value)
    if value < 0:
        raise _Problem(f"{what} is negative ({value})")
    return value


def _parse_blob(blob: pb.Field, where: str) -> np.ndarray:
    """BlobProto -> float32 array in its shape (BlobShape if present, else num/channels/h/w)."""
    legacy, dims, floats, doubles = {}, None, [], []
    for f in pb.iter_fields(pb.expect_wire_type(blob, pb.LEN).value, blob.offset):
        if f.number in (1, 2, 3, 4):
            legacy[f.number] = _non_negative(
                pb.expect_wire_type(f, pb.VARINT).value, f"{where} dimension"
            )
        elif f.number == 5:
            floats.append(f)
        elif f.number == 7:
            shape_fields = pb.iter_fields(pb.expect_wire_type(f, pb.LEN).value, f.offset)
            dim_fields = [d for d in shape_fields if d.number == 1]
            dims = (dims or []) + [
                _non_negative(d, f"{where} dimension") for d in pb.repeated_varints(dim_fields)
            ]
        elif f.number == 8:
            doubles.append(f)
    shape = tuple(dims) if dims is not None else tuple(legacy.get(i, 0) for i in (1, 2, 3, 4))
    if floats or not doubles:
        data = pb.repeated_floats(floats, np.float32)
    else:
        data = pb.repeated_floats(doubles, np.float64).astype(np.float32)
    if data.size != math.prod(shape):
        raise _Problem(
            f"{where} holds {data.size} values but its shape {shape} needs {math.prod(shape)}"
        )
    return data.reshape(shape)


def _parse_layer(layer: pb.Field, layout: int, index: int) -> CaffeLayer:
    name_no, type_no, blobs_no = _LAYER_FIELDS[layout]
    name, type_, blob_fields = f"#{index}", "", []
    for f in pb.iter_fields(pb.expect_wire_type(layer, pb.LEN).value, layer.offset):
        if f.number == name_no:
            name = pb.as_string(f)
        elif f.number == type_no and layout == _V1_LAYERS:
            n = pb.expect_wire_type(f, pb.VARINT).value
            type_ = V1_LAYER_TYPES.get(n, f"V1_TYPE_{n}")
        elif f.number == type_no:
            type_ = pb.as_string(f)
        elif f.number == blobs_no:
            blob_fields.append(f)
    blobs = [_parse_blob(b, f"layer {name!r} blob {i}") for i, b in enumerate(blob_fields)]
    return CaffeLayer(name, type_, blobs)


def _parse_net(data: bytes) -> list[CaffeLayer]:
    layers = []
    for f in pb.iter_fields(data):
        if f.number in (1, *_LAYER_FIELDS) and f.wire_type != pb.LEN:
            raise _Problem(
                f"not a Caffe NetParameter (field {f.number} at byte {f.offset} "
                f"has wire type {f.wire_type}, expected a name or layer message)"
            )
        if f.number in _LAYER_FIELDS:
            layers.append(_parse_layer(f, f.number, len(layers)))
    if not layers:
        raise _Problem("not a Caffe NetParameter (no `layer` or `layers` entries)")
    if not any(layer.blobs for layer in layers):
        raise _Problem(f"no layer has weights ({len(layers)} layers; is this a prototxt net?)")
    return layers


def read_caffemodel(path: str | Path) -> list[CaffeLayer]:
    """Reads every layer (V1 `layers` or V2 `layer` layout) of a binary `.caffemodel`, in order."""
    path = Path(path)
    return _decode(path, _parse_net, _read_file(path))


def read_binaryproto(path: str | Path) -> np.ndarray:
    """Reads one BlobProto (e.g. a Caffe mean file) as a float32 array in its stored shape."""
    path = Path(path)
    data = _read_file(path)
    return _decode(path, lambda d: _parse_blob(pb.Field(0, pb.LEN, memoryview(d), 0), "blob"), data)


def blob_matrix(w: np.ndarray) -> np.ndarray:
    """InnerProduct weights as (out, in): a V1 blob (1, 1, out, in) loses its leading 1s; any
    other shape is returned as it is (for the caller's shape check to report)."""
    if w.ndim > 2 and math.prod(w.shape[:-2]) == 1:
        return w.reshape(w.shape[-2:])
    return w


def blob_vector(b: np.ndarray) -> np.ndarray:
    """A bias as (n,): a V1 blob (1, 1, 1, n) is flattened; any other shape is returned as it is."""
    return b.reshape(-1) if math.prod(b.shape[:-1]) == 1 else b


# --- mean images ------------------------------------------------------------------------------


def caffe_mean_image(path: str | Path, shape: tuple[int, int, int] = (256, 256, 3)) -> np.ndarray:
    """A Caffe mean image as float32 H, W, C `shape` (default: ImageNet's [256, 256, 3] BGR).

    Reads a `.npy` (C, H, W, e.g. Caffe's `ilsvrc_2012_mean.npy` (3, 256, 256)) or a
    `.binaryproto` (e.g. `imagenet_mean.binaryproto` (1, 3, 256, 256), or the paper's MNIST
    `mnist_mean.binaryproto` (1, 1, 28, 28) with shape (28, 28, 1)); leading size-1 axes are
    dropped. Raises `CaffeFormatError` for a missing, unreadable or misshaped file.
    """
    h, w, c = shape
    expected = (c, h, w)
    path = Path(path)
    kind = not_a_regular_file(path)
    if kind is not None:
        raise CaffeFormatError(f"{path}: not a regular file ({kind})")
    if path.suffix == ".npy":
        check_readable_file(path, CaffeFormatError)
        try:
            mean = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            # NumPy's text for a non-.npy file talks about pickles; say what the file is not
            why = "it holds pickled objects" if "pickle" in str(e) else str(e)
            raise CaffeFormatError(f"{path}: not a readable .npy array ({why})") from None
    elif path.suffix == ".binaryproto":
        mean = read_binaryproto(path)
    else:
        raise CaffeFormatError(f"{path}: unknown mean file type (expected .npy or .binaryproto)")
    found = mean.shape
    while mean.ndim > 3 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.shape != expected or not np.issubdtype(mean.dtype, np.number):
        raise CaffeFormatError(
            f"{path}: mean image has shape {found} ({mean.dtype}), expected {expected} "
            "C, H, W (optionally with a leading 1)"
        )
    if not np.isfinite(mean).all():
        raise CaffeFormatError(f"{path}: mean image has non-finite values")
    return np.ascontiguousarray(mean.transpose(1, 2, 0), dtype=np.float32)
