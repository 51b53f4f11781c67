"""Conversion of Caffe and torchvision ImageNet weights to Flax parameters, and Caffe's mean image.

Rules (`jaxfool.classifiers.weights.torch_layout`'s, which every converter uses; checked numerically
against torch in `tests/test_imagenet_nets.py`):

- Convolution: OIHW (grouped: O x I/g x kh x kw) -> Flax HWIO with `transpose(2, 3, 1, 0)`. Caffe,
  torch and Flax all compute cross-correlation and split grouped channels into contiguous
  blocks, so kernels are neither flipped nor reordered.
- Dense: (out, in) -> (in, out). Caffe V1 files store InnerProduct weights as (1, 1, out, in) and
  biases as (1, 1, 1, n).
- Flatten order: Caffe and torch flatten pool5 as C, H, W, Flax NHWC as H, W, C, so the first fully
  connected layer's input axis is permuted: `W.reshape(out, C, H, W).transpose(2, 3, 1, 0)`.

Every result is checked against the module's parameter shapes (from `jax.eval_shape`, so nothing
is computed); a file that does not fit raises `WeightsFileError` naming the parameter and shapes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.base.npz import WeightsFileError, check_matches
from jaxfool.classifiers.nets.alexnet import AlexNetTorchvision
from jaxfool.classifiers.nets.caffenet import CaffeNet
from jaxfool.classifiers.weights.caffemodel import (
    CaffeFormatError,
    read_binaryproto,
    read_caffemodel,
)
from jaxfool.classifiers.weights.torch_layout import conv_kernel, dense_kernel

CAFFENET_LAYERS = {
    "conv1": "Convolution",
    "conv2": "Convolution",
    "conv3": "Convolution",
    "conv4": "Convolution",
    "conv5": "Convolution",
    "fc6": "InnerProduct",
    "fc7": "InnerProduct",
    "fc8": "InnerProduct",
}
POOL5_CHW = (256, 6, 6)  # the C, H, W that fc6 (and torchvision's classifier.1) flatten


def reference_params(module: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Zero arrays (broadcast views, no memory) with the shapes of `module`'s parameters."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros(input_shape, jnp.float32))
    return jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), shapes)


def _dense_kernel(w: np.ndarray, chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """(out, in) or V1 (1, 1, out, in) -> (in, out) (`torch_layout.dense_kernel`)."""
    if w.ndim > 2 and math.prod(w.shape[:-2]) == 1:
        w = w.reshape(w.shape[-2:])
    return dense_kernel(w, chw)


def _bias(b: np.ndarray) -> np.ndarray:
    """(n,) or V1 (1, 1, 1, n) -> (n,)."""
    return b.reshape(-1) if math.prod(b.shape[:-1]) == 1 else b


def caffenet_params_from_caffemodel(
    path: str | Path, lrn_before_pool: bool = False, num_classes: int = 1000
) -> dict[str, Any]:
    """Flax variables `{"params": {conv1, ..., fc8}}` for `CaffeNet` from a `.caffemodel`.

    Reads V1 (`layers`) and V2 (`layer`) files, e.g. `bvlc_reference_caffenet.caffemodel`
    (`lrn_before_pool=False`) or `bvlc_alexnet.caffemodel` (`True`); the flag only picks the
    module whose shapes are checked, both have the same parameters. Only conv1..fc8 are read
    (the first layer of each name that has weights). Arrays are float32 NumPy; conv1 expects BGR.
    Raises `CaffeFormatError` for an unreadable file or a layer of the wrong kind, and
    `WeightsFileError` naming the parameter and both shapes when a layer is missing or misshaped.
    """
    path = Path(path)
    by_name: dict[str, Any] = {}
    for layer in read_caffemodel(path):
        if layer.blobs and layer.name in CAFFENET_LAYERS:
            by_name.setdefault(layer.name, layer)
    params = {}
    for name, layer in by_name.items():
        want = CAFFENET_LAYERS[name]
        if layer.type != want or len(layer.blobs) != 2:
            raise CaffeFormatError(
                f"{path}: layer {name!r} is {layer.type or 'untyped'} with {len(layer.blobs)} "
                f"blobs, expected {want} with weights and bias"
            )
        w, b = layer.blobs
        if want == "Convolution":
            kernel = conv_kernel(w)
        else:
            kernel = _dense_kernel(w, POOL5_CHW if name == "fc6" else None)
        params[name] = {"kernel": kernel, "bias": _bias(b)}
    variables = {"params": params}
    module = CaffeNet(num_classes=num_classes, lrn_before_pool=lrn_before_pool)
    check_matches(path, variables, reference_params(module, (1, 227, 227, 3)))
    return variables


# torchvision state-dict prefix -> Flax layer name (see `jaxfool.classifiers.nets.alexnet`)
TORCHVISION_ALEXNET_LAYERS = {
    "features.0": "features_0",
    "features.3": "features_3",
    "features.6": "features_6",
    "features.8": "features_8",
    "features.10": "features_10",
    "classifier.1": "classifier_1",
    "classifier.4": "classifier_4",
    "classifier.6": "classifier_6",
}


def alexnet_torchvision_params(
    state_dict: dict[str, Any], num_classes: int = 1000, source: str = "state dict"
) -> dict[str, Any]:
    """Flax variables for `AlexNetTorchvision` from a torchvision AlexNet state dict.

    `state_dict` maps `features.0.weight`, ..., `classifier.6.bias` to arrays (NumPy, or anything
    `np.asarray` accepts, e.g. CPU torch tensors). Raises `WeightsFileError` (prefixed with
    `source`) for a missing or unexpected key or a shape that does not fit the network.
    """
    expected = {f"{p}.{kind}" for p in TORCHVISION_ALEXNET_LAYERS for kind in ("weight", "bias")}
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise WeightsFileError(
            f"{source}: not a torchvision AlexNet state dict (missing keys {missing}, "
            f"unexpected keys {unexpected})"
        )
    params = {}
    for prefix, name in TORCHVISION_ALEXNET_LAYERS.items():
        w = np.asarray(state_dict[f"{prefix}.weight"], np.float32)
        b = np.asarray(state_dict[f"{prefix}.bias"], np.float32)
        if prefix.startswith("features"):
            kernel = conv_kernel(w)
        else:
            kernel = _dense_kernel(w, POOL5_CHW if prefix == "classifier.1" else None)
        params[name] = {"kernel": kernel, "bias": b}
    variables = {"params": params}
    check_matches(
        source, variables, reference_params(AlexNetTorchvision(num_classes), (1, 224, 224, 3))
    )
    return variables


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
    if path.suffix == ".npy":
        if not path.is_file():
            raise CaffeFormatError(f"{path}: no such file")
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
