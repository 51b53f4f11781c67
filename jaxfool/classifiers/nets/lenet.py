"""Caffe's MNIST LeNet, exactly as in `examples/mnist/lenet_train_test.prototxt`.

conv1 20@5x5 -> maxpool 2/2 -> conv2 50@5x5 -> maxpool 2/2 -> ip1 500 -> ReLU -> ip2 10.
There is no ReLU after the convolutions (as in Caffe's example). Layer names follow Caffe's so
that converted `.caffemodel` weights map one to one. The module takes float input NHWC
[B, 28, 28, 1] that is already preprocessed (`lenet_input`: (pixel - mean) / 256).

Also here: the classifier (`LeNetLogits`, its gradient-ascent `LeNetSpace`), the loaders of
jaxfool's .npz and the paper's .caffemodel, and the registry entries `lenet` and `lenet_paper`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.base import npz
from jaxfool.classifiers.protocol import (
    DIGIT_LABELS,
    MNIST_SHAPE,
    MODELS_DIR,
    Classifier,
    InputSpace,
    ModelSpec,
    forward,
)


class LeNet(nn.Module):
    """LeNet with Caffe's layer names; returns logits [B, num_classes]."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.Conv(20, (5, 5), padding="VALID", name="conv1")(x)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.Conv(50, (5, 5), padding="VALID", name="conv2")(x)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
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

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        x = lenet_input(images, params["mean"])
        return forward(LeNet(self.num_classes), params["net"], x, self.compute_dtype)

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
    from jaxfool.classifiers.weights.caffemodel import lenet_params_from_caffemodel

    return lenet_classifier("lenet_paper", lenet_params_from_caffemodel(path), mean)


REGISTRY = (
    ModelSpec(
        "lenet",
        "Caffe MNIST LeNet trained by jaxfool (models/lenet_mnist.npz)",
        MNIST_SHAPE,
        MODELS_DIR / "lenet_mnist.npz",
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
