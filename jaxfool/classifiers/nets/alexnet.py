"""torchvision's AlexNet (`torchvision/models/alexnet.py`, the "one weird trick" variant).

conv 64@11x11/4 p2 -> relu -> pool -> conv 192@5x5 p2 -> relu -> pool -> conv 384@3x3 p1 -> relu
-> conv 256@3x3 p1 -> relu -> conv 256@3x3 p1 -> relu -> pool -> adaptive avg pool 6x6
-> fc 4096 -> relu -> fc 4096 -> relu -> fc 1000 (logits).

Unlike Caffe's AlexNet there is no LRN, no grouped convolution, and pooling (3x3, stride 2) rounds
down (torch's default floor mode, which is Flax's VALID). Dropout is the identity at test time.
Input is NHWC float32 [B, 224, 224, 3] in **RGB**, scaled to [0, 1] and normalised with
torchvision's ImageNet mean and std (`preprocess.torchvision_eval_input`).

Layer names are torchvision's `state_dict` prefixes with `.` replaced by `_`:

    features.0 -> features_0     features.3 -> features_3     features.6 -> features_6
    features.8 -> features_8     features.10 -> features_10
    classifier.1 -> classifier_1 classifier.4 -> classifier_4 classifier.6 -> classifier_6

(the other indices are parameter-free ReLU, MaxPool and Dropout layers), converted by
`alexnet_torchvision_params`. Also here: the classifier (`AlexNetTorchvisionLogits`) and the
registry entry `alexnet_torchvision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxfool.classifiers.preprocess as preprocess
from jaxfool.base.npz import WeightsFileError, check_matches
from jaxfool.classifiers.protocol import (
    IMAGENET_SHAPE,
    Classifier,
    ModelSpec,
    TorchvisionSpace,
    forward,
    imagenet_labels,
)
from jaxfool.classifiers.weights.cache import cached_variables
from jaxfool.classifiers.weights.state_dict import load_state_dict
from jaxfool.classifiers.weights.torch_layout import conv_kernel, dense_kernel, reference_params


def _adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] averaging weights over torch's bins [floor(i*n/m), ceil((i+1)*n/m))."""
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jnp.ndarray, output_size: tuple[int, int] = (6, 6)) -> jnp.ndarray:
    """`torch.nn.AdaptiveAvgPool2d(output_size)` on NHWC `x`, for any input size.

    The identity (no arithmetic at all) when the input already has `output_size`, as at 224x224.
    Otherwise each output is the mean of torch's (possibly overlapping) bin, computed as a
    weighted sum, so it agrees with torch to float rounding.
    """
    (h, w), (oh, ow) = x.shape[1:3], output_size
    if (h, w) == (oh, ow):
        return x
    x = jnp.einsum("oh,bhwc->bowc", _adaptive_pool_matrix(h, oh), x)
    return jnp.einsum("pw,bowc->bopc", _adaptive_pool_matrix(w, ow), x)


class AlexNetTorchvision(nn.Module):
    """torchvision AlexNet with torchvision's layer names (`.` -> `_`); returns logits [B, C]."""

    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        def pool(x):
            return nn.max_pool(x, (3, 3), strides=(2, 2))  # VALID = torch floor mode

        x = nn.relu(nn.Conv(64, (11, 11), strides=(4, 4), padding=2, name="features_0")(x))
        x = pool(x)
        x = nn.relu(nn.Conv(192, (5, 5), padding=2, name="features_3")(x))
        x = pool(x)
        x = nn.relu(nn.Conv(384, (3, 3), padding=1, name="features_6")(x))
        x = nn.relu(nn.Conv(256, (3, 3), padding=1, name="features_8")(x))
        x = nn.relu(nn.Conv(256, (3, 3), padding=1, name="features_10")(x))
        x = adaptive_avg_pool(pool(x), (6, 6))
        x = x.reshape(x.shape[0], -1)  # flattened H, W, C (torch flattens C, H, W)
        x = nn.relu(nn.Dense(4096, name="classifier_1")(x))
        x = nn.relu(nn.Dense(4096, name="classifier_4")(x))
        return nn.Dense(self.num_classes, name="classifier_6")(x)


# --- torchvision state dict -> Flax variables ----------------------------------------------------

# torchvision state-dict prefix -> Flax layer name
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
POOL5_CHW = (256, 6, 6)  # the C, H, W that classifier.1 flattens (Flax flattens H, W, C)


def alexnet_torchvision_params(
    state_dict: dict[str, Any], num_classes: int = 1000, source: str = "state dict"
) -> dict[str, Any]:
    """Flax variables for `AlexNetTorchvision` from a torchvision AlexNet state dict.

    `state_dict` maps `features.0.weight`, ..., `classifier.6.bias` to arrays (NumPy, or anything
    `np.asarray` accepts, e.g. CPU torch tensors). Kernels go to Flax's layout by
    `torch_layout`'s rules, classifier.1's input axis permuted from torch's C, H, W flatten.
    Raises `WeightsFileError` (prefixed with `source`) for a missing or unexpected key or a
    shape that does not fit the network.
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
            kernel = dense_kernel(w, POOL5_CHW if prefix == "classifier.1" else None)
        params[name] = {"kernel": kernel, "bias": b}
    variables = {"params": params}
    check_matches(
        source, variables, reference_params(AlexNetTorchvision(num_classes), (1, 224, 224, 3))
    )
    return variables


# --- the classifier ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlexNetTorchvisionLogits:
    """torchvision AlexNet on uint8 RGB [B, H, W, 3] with torchvision's eval transform."""

    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = None  # params are the network's variables

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        x = preprocess.torchvision_eval_input(images)
        return forward(AlexNetTorchvision(), params, x, self.compute_dtype)

    def input_space(self) -> TorchvisionSpace:
        return TorchvisionSpace.of(AlexNetTorchvision())


def build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    del mean  # normalised by torchvision's mean/std
    params = jax.tree.map(jnp.asarray, variables)
    logits = AlexNetTorchvisionLogits()
    return Classifier("alexnet_torchvision", logits, IMAGENET_SHAPE, imagenet_labels()), params


def load(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    variables = cached_variables(
        path,
        "alexnet_torchvision",
        lambda: alexnet_torchvision_params(load_state_dict(path), source=str(path)),
    )
    return build(variables, mean)


REGISTRY = (
    ModelSpec(
        "alexnet_torchvision",
        "torchvision AlexNet (pass --weights=alexnet-owt-*.pth)",
        IMAGENET_SHAPE,
        None,
        load,
        (AlexNetTorchvision(), 224, 3),
        build,
    ),
)
