"""Caffe's MNIST LeNet, exactly as in `examples/mnist/lenet_train_test.prototxt`.

conv1 20@5x5 -> maxpool 2/2 -> conv2 50@5x5 -> maxpool 2/2 -> ip1 500 -> ReLU -> ip2 10.
There is no ReLU after the convolutions (as in Caffe's example). Layer names follow Caffe's so
that converted `.caffemodel` weights map one to one. The module takes float input NHWC
[B, 28, 28, 1] that is already preprocessed (`lenet_input`: (pixel - mean) / 256).

Also here: the classifier (`LeNetLogits`, its gradient-ascent `LeNetSpace`), the converter of
Caffe LeNet files (the paper's trained LeNet, `Evolving-AI-Lab/fooling`
`model/lenet/lenet_iter_10000`, is a V1 `.caffemodel`), the loaders of jaxfool's .npz and the
paper's .caffemodel, and the registry entries `lenet` and `lenet_paper`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.base import npz
from jaxfool.classifiers.nets import input_grads
from jaxfool.classifiers.protocol import (
    DIGIT_LABELS,
    MNIST_SHAPE,
    Classifier,
    InputSpace,
    ModelSpec,
    forward,
    shipped_file,
)
from jaxfool.classifiers.weights.caffemodel import CaffeFormatError, CaffeLayer, read_caffemodel
from jaxfool.classifiers.weights.torch_layout import conv_kernel, dense_kernel


class LeNet(nn.Module):
    """LeNet with Caffe's layer names; returns logits [B, num_classes]. written_input_grads:
    the same forward values, with `input_grads`' convolution and pooling, whose gradients in
    the image are 3.4x faster on the CPU (what the gradient emitters take)."""

    num_classes: int = 10
    written_input_grads: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.written_input_grads:
            conv = partial(nn.Conv, conv_general_dilated=input_grads.conv_general_dilated)
            pool = input_grads.max_pool_2x2
        else:
            conv, pool = nn.Conv, partial(nn.max_pool, window_shape=(2, 2), strides=(2, 2))
        x = conv(20, (5, 5), padding="VALID", name="conv1")(x)
        x = pool(x)
        x = conv(50, (5, 5), padding="VALID", name="conv2")(x)
        x = pool(x)
        x = x.reshape(x.shape[0], -1)  # flattened H, W, C (Caffe flattens C, H, W)
        x = nn.relu(nn.Dense(500, name="ip1")(x))
        return nn.Dense(self.num_classes, name="ip2")(x)


def zero_variables(num_classes: int = 10) -> dict:
    """Zero arrays shaped like `LeNet(num_classes)`'s variables: what a weights file must match.

    Built with `jax.eval_shape`, so it costs no computation.
    """
    shapes = jax.eval_shape(
        LeNet(num_classes).init, jax.random.key(0), jnp.zeros((1, 28, 28, 1), jnp.float32)
    )
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


# --- Caffe's LeNet files -> Flax variables -------------------------------------------------------

LENET_LAYERS = {
    "conv1": "Convolution",
    "conv2": "Convolution",
    "ip1": "InnerProduct",
    "ip2": "InnerProduct",
}
LENET_POOL2_HW = (4, 4)  # spatial size of pool2 for a 28x28 input: 28 -5+1=24 -> 12 -5+1=8 -> 4


def _lenet_blobs(path: Path, layers: list[CaffeLayer]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer name: (weights, bias)} for LeNet's four layers; the first layer of a name wins."""
    by_name: dict[str, CaffeLayer] = {}
    for layer in layers:
        if layer.blobs:
            by_name.setdefault(layer.name, layer)
    blobs = {}
    for name, type_ in LENET_LAYERS.items():
        layer = by_name.get(name)
        if layer is None:
            raise CaffeFormatError(
                f"{path}: no layer {name!r} with weights (layers with weights: {sorted(by_name)})"
            )
        if layer.type != type_ or len(layer.blobs) != 2:
            raise CaffeFormatError(
                f"{path}: layer {name!r} is {layer.type or 'untyped'} with {len(layer.blobs)} "
                f"blobs, expected {type_} with weights and bias"
            )
        blobs[name] = (layer.blobs[0], layer.blobs[1])
    return blobs


def _matrix(path: Path, name: str, w: np.ndarray) -> np.ndarray:
    """InnerProduct weights (out, in); V1 files store them as (1, 1, out, in)."""
    if w.ndim < 2 or math.prod(w.shape[:-2]) != 1:
        raise CaffeFormatError(
            f"{path}: layer {name!r} weights have shape {w.shape}, not (out, in)"
        )
    return w.reshape(w.shape[-2:])


def _conv_kernel(path: Path, name: str, w: np.ndarray) -> np.ndarray:
    """Caffe OIHW -> Flax HWIO (`torch_layout.conv_kernel`), refusing a blob that is not 4-D."""
    if w.ndim != 4:
        raise CaffeFormatError(f"{path}: layer {name!r} weights have shape {w.shape}, not OIHW")
    return conv_kernel(w)


def lenet_params_from_caffemodel(path: str | Path) -> dict[str, Any]:
    """Flax variables `{"params": {conv1, conv2, ip1, ip2}}` for `LeNet` from a Caffe LeNet file.

    The number of classes is ip2's output size in the file (`lenet_num_classes`). The returned
    arrays are float32 NumPy arrays; the model expects NHWC input already preprocessed (pixel/256
    for the paper's weights). Raises `CaffeFormatError` or, when a shape does not fit the network,
    `WeightsFileError` naming the parameter and both shapes.
    """
    path = Path(path)
    blobs = _lenet_blobs(path, read_caffemodel(path))
    (w1, b1), (w2, b2) = blobs["conv1"], blobs["conv2"]
    ip1, ip2 = _matrix(path, "ip1", blobs["ip1"][0]), _matrix(path, "ip2", blobs["ip2"][0])
    conv2 = _conv_kernel(path, "conv2", w2)
    params = {
        "conv1": {"kernel": _conv_kernel(path, "conv1", w1), "bias": b1.reshape(-1)},
        "conv2": {"kernel": conv2, "bias": b2.reshape(-1)},
        "ip1": {
            "kernel": dense_kernel(ip1, (conv2.shape[3], *LENET_POOL2_HW)),
            "bias": blobs["ip1"][1].reshape(-1),
        },
        "ip2": {"kernel": dense_kernel(ip2), "bias": blobs["ip2"][1].reshape(-1)},
    }
    variables = {"params": params}
    npz.check_matches(path, variables, zero_variables(ip2.shape[0]))
    return variables


def lenet_num_classes(variables: dict[str, Any]) -> int:
    """The number of classes of LeNet variables (ip2's output size)."""
    return int(variables["params"]["ip2"]["bias"].shape[0])


def lenet_from_caffemodel(path: str | Path) -> tuple[LeNet, dict[str, Any]]:
    """(`LeNet` with the file's number of classes, its variables) from a Caffe LeNet file."""
    variables = lenet_params_from_caffemodel(path)
    return LeNet(num_classes=lenet_num_classes(variables)), variables


# --- the classifier ------------------------------------------------------------------------------


def lenet_input(pixels: jax.Array, mean: jax.Array) -> jax.Array:
    """Caffe's MNIST input layer: (pixel - mean) * 1/256 (the mean is zero for how both LeNets
    were trained, or the paper's MNIST mean image for its evaluation prototxt)."""
    return (pixels.astype(jnp.float32) - mean) * jnp.float32(1 / 256)


@dataclass(frozen=True)
class LeNetLogits:
    """Caffe's MNIST input layer, then LeNet. params = {"net": LeNet variables, "mean": float32
    [28, 28, 1]}."""

    num_classes: int = 10
    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = "net"  # the params entry holding the network's weights

    written_input_grads: bool = False

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        x = lenet_input(images, params["mean"])
        net = LeNet(self.num_classes, self.written_input_grads)
        return forward(net, params["net"], x, self.compute_dtype)

    def for_input_grads(self) -> LeNetLogits:
        """The same logits, differentiated in the image 3.4x faster (`input_grads`)."""
        return dataclasses.replace(self, written_input_grads=True)

    def input_space(self) -> LeNetSpace:
        return LeNetSpace(MNIST_SHAPE, MNIST_SHAPE, (0, 0), (1 / 256,), self.num_classes)


@dataclass(frozen=True)
class LeNetSpace(InputSpace):
    """LeNet's input space for gradient ascent: x = (pixel - mean) / 256."""

    num_classes: int = 10

    def net(self, params, x):
        return LeNet(self.num_classes).apply(params["net"], x)

    def encode(self, params, pixels):
        return lenet_input(pixels, params["mean"])

    def decode(self, params, x):
        return x * 256.0 + params["mean"]


def lenet_classifier(
    name: str, net_params: Any, mean: np.ndarray | None = None
) -> tuple[Classifier, Any]:
    """A LeNet classifier from Flax variables {"params": ...}; its output count (10, or 11
    with the retraining experiment's fooling class) is read from the ip2 bias."""
    num_classes = int(net_params["params"]["ip2"]["bias"].shape[0])
    labels = DIGIT_LABELS + tuple(f"class {i}" for i in range(10, num_classes))
    params = {
        "net": jax.tree.map(jnp.asarray, net_params),
        "mean": jnp.zeros(MNIST_SHAPE, jnp.float32) if mean is None else jnp.asarray(mean),
    }
    return Classifier(name, LeNetLogits(num_classes), MNIST_SHAPE, labels[:num_classes]), params


def load_npz(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    """jaxfool's own LeNet weights (.npz, 10 or 11 outputs), shapes checked."""
    variables, _ = npz.load_params(path)
    try:
        num_classes = int(variables["params"]["ip2"]["bias"].shape[0])
    except (KeyError, TypeError, AttributeError):
        raise npz.WeightsFileError(f"{path}: no params/ip2/bias: not LeNet weights") from None
    npz.check_matches(path, variables, zero_variables(num_classes))
    return lenet_classifier("lenet", variables, mean)


def load_caffemodel(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    """The paper's LeNet, Caffe's lenet_iter_10000 (.caffemodel)."""
    return lenet_classifier("lenet_paper", lenet_params_from_caffemodel(path), mean)


REGISTRY = (
    ModelSpec(
        "lenet",
        "Caffe MNIST LeNet trained by jaxfool (models/lenet_mnist.npz)",
        MNIST_SHAPE,
        shipped_file("lenet_mnist.npz"),
        load_npz,
        (LeNet(), 28, 1),
        partial(lenet_classifier, "lenet"),
        photo_size=28,
    ),
    ModelSpec(
        "lenet_paper",
        "the paper's own LeNet, Caffe .caffemodel lenet_iter_10000 (pass --weights)",
        MNIST_SHAPE,
        None,
        load_caffemodel,
        (LeNet(), 28, 1),
        partial(lenet_classifier, "lenet_paper"),
        photo_size=28,
    ),
)
