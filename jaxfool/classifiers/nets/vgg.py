"""torchvision's VGG-16 (Simonyan & Zisserman 2015, configuration D, no batch norm) in Flax,
inference only.

Module names are torchvision's state-dict paths (`features.0`, `classifier.6`), so
`jaxfool.classifiers.weights.torch_layout` converts its
`vgg16-*.pth` files by rule; the feature map is
flattened as C, H, W, as torch does. Input: float32 NHWC RGB [B, 224, 224, 3] normalised by
`preprocess.torchvision_eval_input` (torchvision's adaptive 7 x 7 pool is then the identity).
Output: logits [B, num_classes].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfool.classifiers.nets.torchvision import torch_layout_spec

# "M": a 2 x 2 max pool; a number: a 3 x 3 convolution (padding 1) + ReLU with that many outputs
CONFIGS = {16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")}  # fmt: skip


class VGG(nn.Module):
    depth: int = 16
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        config = CONFIGS[self.depth]
        for i, layer in zip(torch_indices(config), config, strict=True):
            if layer == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            else:
                x = nn.relu(
                    nn.Conv(layer, (3, 3), padding=((1, 1), (1, 1)), name=f"features.{i}")(x)
                )
        if x.shape[1:3] != (7, 7):
            raise ValueError(f"VGG expects 224 x 224 inputs (a 7 x 7 map), got {x.shape[1:3]}")
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch's C, H, W order
        x = nn.relu(nn.Dense(4096, name="classifier.0")(x))
        x = nn.relu(nn.Dense(4096, name="classifier.3")(x))
        return nn.Dense(self.num_classes, name="classifier.6")(x)


def torch_indices(config) -> list[int]:
    """torch's `features` index of each layer: a convolution's ReLU takes the next index."""
    out, i = [], 0
    for layer in config:
        out.append(i)
        i += 1 if layer == "M" else 2
    return out


REGISTRY = (
    torch_layout_spec(
        "vgg16",
        lambda n=1000: VGG(16, n),
        "classifier.6.bias",
        "torchvision VGG-16 (pass --weights=vgg16-*.pth or .safetensors)",
    ),
)
