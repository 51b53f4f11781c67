"""torchvision's MobileNetV2 (Sandler et al. 2018, width 1.0) in Flax, inference only.

Module names are torchvision's state-dict paths (`features.0.0`, `features.2.conv.1.1`,
`classifier.1`), so `jaxfool.classifiers.weights.torch_layout` converts its
`mobilenet_v2-*.pth` files by
rule. Padding is torch's symmetric (k - 1) / 2, BatchNorm epsilon 1e-5 on running statistics.
The depthwise convolutions take the CPU form of `nets.conv.depthwise_conv` where the network
is lowered for a CPU (XLA's grouped convolution elsewhere). Input: float32 NHWC RGB
[B, 224, 224, 3] from `preprocess.torchvision_eval_input`. Output: logits [B, num_classes].
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfool.classifiers.nets.conv import depthwise_conv
from jaxfool.classifiers.nets.torchvision import torch_layout_spec

BN_EPSILON = 1e-5
# expansion t, output channels c, repeats n, first stride s
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
STEM, HEAD = 32, 1280


def conv_bn(x, features, kernel, stride, name, groups=1, relu6=True, backend="auto"):
    """torchvision's Conv2dNormActivation: conv (no bias) `name.0`, BatchNorm `name.1`, ReLU6."""
    pad = (kernel - 1) // 2
    x = nn.Conv(
        features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
        feature_group_count=groups, use_bias=False, name=f"{name}.0",
        conv_general_dilated=partial(depthwise_conv, backend=backend),
    )(x)  # fmt: skip
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name=f"{name}.1")(x)
    return nn.relu6(x) if relu6 else x


class MobileNetV2(nn.Module):
    num_classes: int = 1000
    backend: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cb = partial(conv_bn, backend=self.backend)
        x = cb(x, STEM, 3, 2, "features.0")
        index = 1
        for t, c, n, s in SETTINGS:
            for i in range(n):
                stride = s if i == 0 else 1
                p = f"features.{index}.conv"
                cin, hidden = x.shape[-1], x.shape[-1] * t
                y, k = x, 0
                if t != 1:
                    y, k = cb(y, hidden, 1, 1, f"{p}.0"), 1
                y = cb(y, hidden, 3, stride, f"{p}.{k}", groups=hidden)
                y = nn.Conv(c, (1, 1), use_bias=False, name=f"{p}.{k + 1}")(y)
                y = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name=f"{p}.{k + 2}")(
                    y
                )
                x = x + y if stride == 1 and cin == c else y
                index += 1
        x = cb(x, HEAD, 1, 1, f"features.{index}")
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="classifier.1")(x)


REGISTRY = (
    torch_layout_spec(
        "mobilenet_v2",
        lambda n=1000: MobileNetV2(n),
        "classifier.1.bias",
        "torchvision MobileNetV2 (pass --weights=mobilenet_v2-*.pth or .safetensors)",
    ),
)
