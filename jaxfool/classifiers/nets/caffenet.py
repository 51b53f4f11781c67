"""Caffe's ImageNet networks: `bvlc_reference_caffenet` (the paper's) and `bvlc_alexnet`.

conv1 96@11x11/4 -> relu -> pool+LRN -> conv2 256@5x5 p2 g2 -> relu -> pool+LRN
-> conv3 384@3x3 p1 -> relu -> conv4 384@3x3 p1 g2 -> relu -> conv5 256@3x3 p1 g2 -> relu -> pool
-> fc6 4096 -> relu -> fc7 4096 -> relu -> fc8 1000 (logits).

CaffeNet pools before the LRN; AlexNet (`lrn_before_pool=True`) normalises first. Both use
Caffe's semantics, which differ from Flax's defaults in two places:

- Max pooling rounds the output size up (`pooled = ceil((H - k) / s) + 1`, Caffe's default
  `round_mode: CEIL`); `max_pool_ceil` pads the bottom/right edge with -inf to get it.
- LRN across channels: `b = a / (k + alpha / n * sum of a^2 over n channels)^beta` (`lrn`).

Dropout is the identity at test time and is left out. Layer names follow Caffe's, so converted
`.caffemodel` weights map one to one (`caffenet_params_from_caffemodel`). Input is NHWC float32
[B, 227, 227, 3] in **BGR**, 0..255 scale with the ImageNet mean image already subtracted.

`backend` (`jaxfool.base.platforms`) picks the CPU's convolutions (grouped ones one per group,
conv1 with an unread padding row; `jaxfool.classifiers.nets.conv`) or the plain XLA ones.

Also here: the converter of `.caffemodel` files, the paper's fitness (`CaffeNetLogits`: BGR minus
the mean, 10 crops), its gradient-ascent `CaffeSpace`, the loader and the registry entries
`caffenet`, `alexnet_caffe` (both declare the paper's 10-crop fitness).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxfool.classifiers.preprocess as preprocess
import jaxfool.classifiers.scoring as scoring
from jaxfool.base.npz import check_matches
from jaxfool.classifiers.nets.conv import grouped_conv, strided_valid_conv
from jaxfool.classifiers.protocol import (
    IMAGENET_SHAPE,
    Classifier,
    InputSpace,
    ModelSpec,
    forward,
    imagenet_labels,
)
from jaxfool.classifiers.weights.cache import cached_variables
from jaxfool.classifiers.weights.caffemodel import (
    CaffeFormatError,
    blob_matrix,
    blob_vector,
    read_caffemodel,
)
from jaxfool.classifiers.weights.torch_layout import conv_kernel, dense_kernel, reference_params


def lrn(
    x: jnp.ndarray, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> jnp.ndarray:
    """Caffe LRN (ACROSS_CHANNELS) over the last axis, zero padded at the channel edges.

    Same as `torch.nn.LocalResponseNorm(size, alpha, beta, k)`: alpha is divided by `size`.
    """
    channels = x.shape[-1]
    before = (size - 1) // 2
    squares = jnp.pad(jnp.square(x), [(0, 0)] * (x.ndim - 1) + [(before, size - 1 - before)])
    window_sum = sum(squares[..., i : i + channels] for i in range(size))
    return x / (k + alpha / size * window_sum) ** beta


def ceil_pool_size(n: int, window: int, stride: int) -> int:
    """Caffe's pooled size (no padding): ceil((n - window) / stride) + 1."""
    out = math.ceil((n - window) / stride) + 1
    if (out - 1) * stride >= n:  # Caffe drops a last window that would start past the edge
        out -= 1
    return out


def max_pool_ceil(x: jnp.ndarray, window: int = 3, stride: int = 2) -> jnp.ndarray:
    """Max pooling over H, W of NHWC `x` with Caffe's ceil rounding of the output size."""

    def extra(n: int) -> int:  # -inf padding on the far edge that the last window needs
        return max(0, (ceil_pool_size(n, window, stride) - 1) * stride + window - n)

    padding = ((0, extra(x.shape[1])), (0, extra(x.shape[2])))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


class CaffeNet(nn.Module):
    """CaffeNet (`lrn_before_pool=False`) or Caffe's AlexNet (`True`); returns logits [B, C]."""

    num_classes: int = 1000
    lrn_before_pool: bool = False
    backend: str = "auto"  # auto: by lowering platform; or "cpu" / "accelerator" convolutions

    def _pool_and_norm(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.lrn_before_pool:
            return max_pool_ceil(lrn(x))
        return lrn(max_pool_ceil(x))

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        grouped = functools.partial(grouped_conv, backend=self.backend)
        conv = functools.partial(nn.Conv, conv_general_dilated=grouped)
        padded = functools.partial(strided_valid_conv, backend=self.backend)
        conv1 = functools.partial(nn.Conv, conv_general_dilated=padded)
        x = nn.relu(conv1(96, (11, 11), strides=(4, 4), padding="VALID", name="conv1")(x))
        x = self._pool_and_norm(x)
        x = nn.relu(conv(256, (5, 5), padding=2, feature_group_count=2, name="conv2")(x))
        x = self._pool_and_norm(x)
        x = nn.relu(nn.Conv(384, (3, 3), padding=1, name="conv3")(x))
        x = nn.relu(conv(384, (3, 3), padding=1, feature_group_count=2, name="conv4")(x))
        x = nn.relu(conv(256, (3, 3), padding=1, feature_group_count=2, name="conv5")(x))
        x = max_pool_ceil(x)
        x = x.reshape(x.shape[0], -1)  # flattened H, W, C (Caffe flattens C, H, W)
        x = nn.relu(nn.Dense(4096, name="fc6")(x))
        x = nn.relu(nn.Dense(4096, name="fc7")(x))
        return nn.Dense(self.num_classes, name="fc8")(x)


# --- .caffemodel -> Flax variables ---------------------------------------------------------------

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
POOL5_CHW = (256, 6, 6)  # the C, H, W that fc6 flattens (Flax flattens H, W, C: permuted)


def caffenet_params_from_caffemodel(
    path: str | Path, lrn_before_pool: bool = False, num_classes: int = 1000
) -> dict[str, Any]:
    """Flax variables `{"params": {conv1, ..., fc8}}` for `CaffeNet` from a `.caffemodel`.

    Reads V1 (`layers`) and V2 (`layer`) files, e.g. `bvlc_reference_caffenet.caffemodel`
    (`lrn_before_pool=False`) or `bvlc_alexnet.caffemodel` (`True`); the flag only picks the
    module whose shapes are checked, both have the same parameters. Only conv1..fc8 are read
    (the first layer of each name that has weights). Kernels go to Flax's layout by
    `torch_layout`'s rules (Caffe stores OIHW and (out, in) as torch does); fc6's input axis is
    permuted from Caffe's C, H, W flatten to Flax's H, W, C. Arrays are float32 NumPy; conv1
    expects BGR. Raises `CaffeFormatError` for an unreadable file or a layer of the wrong kind,
    and `WeightsFileError` naming the parameter and both shapes when a layer is missing or
    misshaped.
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
            kernel = dense_kernel(blob_matrix(w), POOL5_CHW if name == "fc6" else None)
        params[name] = {"kernel": kernel, "bias": blob_vector(b)}
    variables = {"params": params}
    module = CaffeNet(num_classes=num_classes, lrn_before_pool=lrn_before_pool)
    check_matches(path, variables, reference_params(module, (1, 227, 227, 3)))
    return variables


# --- the classifier ------------------------------------------------------------------------------

# Caffe's per-channel ImageNet means (B, G, R) of ilsvrc_2012_mean.npy, used without --mean
CAFFE_CHANNEL_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)


def caffe_fitness(
    net: nn.Module,
    variables: Any,
    images: jax.Array,
    mean_227: jax.Array,
    ten_crop: bool,
    compute_dtype: str = "float32",
) -> jax.Array:
    """uint8 RGB [B, 256, 256, 3] -> BGR 0..255 minus the mean, then the paper's fitness: the
    log of the softmax averaged over the 10 standard 227 crops (`ten_crop`), else the centre
    crop's logits."""
    bgr = images[..., ::-1].astype(jnp.float32)
    if not ten_crop:
        return forward(net, variables, preprocess.caffe_center_crop(bgr, mean_227), compute_dtype)
    crops = preprocess.caffe_ten_crops(bgr, mean_227)  # [B, 10, 227, 227, 3]
    b, n = crops.shape[:2]
    x = crops.reshape(b * n, *crops.shape[2:])
    log_probs = scoring.log_softmax(forward(net, variables, x, compute_dtype))
    return jax.nn.logsumexp(log_probs.reshape(b, n, -1), axis=1) - jnp.log(jnp.float32(n))


@dataclass(frozen=True)
class CaffeNetLogits:
    """CaffeNet / Caffe AlexNet on uint8 RGB [B, 256, 256, 3], as the paper's fitness.

    BGR, 0..255, minus the central 227 region of the mean image, then either the paper's 10
    crops with the softmax averaged (returned as log-probabilities) or the centre crop (logits).
    params = {"net": CaffeNet variables, "mean_227": float32 [227, 227, 3] BGR}.
    """

    lrn_before_pool: bool = False
    ten_crop: bool = True
    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = "net"

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        net = CaffeNet(lrn_before_pool=self.lrn_before_pool)
        return caffe_fitness(
            net, params["net"], images, params["mean_227"], self.ten_crop, self.compute_dtype
        )

    def input_space(self) -> CaffeSpace:
        crop, offset = preprocess.CAFFE_CROP, preprocess.CAFFE_CROP_OFFSETS[-1]
        return CaffeSpace((crop, crop, 3), IMAGENET_SHAPE, offset, (1.0,) * 3, self.lrn_before_pool)


@dataclass(frozen=True)
class CaffeSpace(InputSpace):
    """BGR minus the central 227 of the mean image, the centre crop of a 256 image: the input of
    the original's single-crop deploy prototxt. params = {"net", "mean_227"} (BGR)."""

    lrn_before_pool: bool = False

    def net(self, params, x):
        return CaffeNet(lrn_before_pool=self.lrn_before_pool).apply(params["net"], x)

    def encode(self, params, pixels):
        return pixels[..., ::-1] - params["mean_227"]

    def decode(self, params, x):
        return (x + params["mean_227"])[..., ::-1]


def caffe_mean_227(mean: np.ndarray | None) -> jnp.ndarray:
    """The central 227 of a 256 mean image (BGR), or Caffe's channel means without one."""
    if mean is None:
        return jnp.broadcast_to(jnp.asarray(CAFFE_CHANNEL_MEAN_BGR, jnp.float32), (227, 227, 3))
    (top, left), crop = preprocess.CAFFE_CROP_OFFSETS[-1], preprocess.CAFFE_CROP  # the centre
    return jnp.asarray(mean[top : top + crop, left : left + crop], jnp.float32)


def _build(name: str, lrn_before_pool: bool):
    def build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        params = {"net": jax.tree.map(jnp.asarray, variables), "mean_227": caffe_mean_227(mean)}
        logits = CaffeNetLogits(lrn_before_pool)
        return Classifier(name, logits, IMAGENET_SHAPE, imagenet_labels()), params

    return build


def _loader(name: str, lrn_before_pool: bool):
    def load(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        variables = cached_variables(
            path, name, lambda: caffenet_params_from_caffemodel(path, lrn_before_pool)
        )
        return _build(name, lrn_before_pool)(variables, mean)

    return load


REGISTRY = (
    ModelSpec(
        "caffenet",
        "bvlc_reference_caffenet, the paper's ImageNet DNN (pass --weights=.caffemodel)",
        IMAGENET_SHAPE,
        None,
        _loader("caffenet", lrn_before_pool=False),
        (CaffeNet(), 227, 3),
        _build("caffenet", lrn_before_pool=False),
        photo_size=256,
        ten_crop=True,
    ),
    ModelSpec(
        "alexnet_caffe",
        "bvlc_alexnet (LRN before pooling; pass --weights=.caffemodel)",
        IMAGENET_SHAPE,
        None,
        _loader("alexnet_caffe", lrn_before_pool=True),
        (CaffeNet(lrn_before_pool=True), 227, 3),
        _build("alexnet_caffe", lrn_before_pool=True),
        photo_size=256,
        ten_crop=True,
    ),
)
