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
`.caffemodel` weights map one to one (`jaxfool.weights.convert`). Input is NHWC float32
[B, 227, 227, 3] in **BGR**, 0..255 scale with the ImageNet mean image already subtracted.

`backend` (`jaxfool.platforms`) picks the CPU's convolutions (grouped ones one per group,
conv1 with an unread padding row; `jaxfool.nets.conv`) or the plain XLA ones.
"""

import functools
import math

import flax.linen as nn
import jax.numpy as jnp

from jaxfool.nets.conv import grouped_conv, strided_valid_conv


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
