"""torchvision's ResNet-18 / 34 / 50 / 101 / 152 (He et al. 2016; torchvision's v1.5: the stride
of a bottleneck is on its 3x3 convolution) in Flax, inference only.

Module names are torchvision's state-dict paths (`layer1.0.conv1`, `layer2.0.downsample.0`,
`fc`), so `jaxfool.classifiers.weights.torch_layout` converts its
`resnet*.pth` (or `.safetensors`) files
by rule. BatchNorm uses its running statistics (collection "batch_stats"), epsilon 1e-5.
Input: float32 NHWC RGB [B, 224, 224, 3] normalised by torchvision's eval transform
(`preprocess.torchvision_eval_input`). Output: logits [B, num_classes].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfool.classifiers.nets.torchvision import torch_layout_spec

BN_EPSILON = 1e-5
# depth -> (block, blocks per stage)
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
WIDTHS = (64, 128, 256, 512)


def conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
    """torch's Conv2d(k, stride, padding=k // 2, bias=False)."""
    pad = kernel // 2
    return nn.Conv(
        features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
        use_bias=False, name=name,
    )  # fmt: skip


def bn(name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name=name)


class ResNet(nn.Module):
    depth: int = 50
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kind, blocks = DEPTHS[self.depth]
        x = nn.relu(bn("bn1")(conv(64, 7, 2, "conv1")(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, (width, n) in enumerate(zip(WIDTHS, blocks, strict=True)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                x = block(kind, width, stride, f"layer{stage + 1}.{i}", x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


def block(kind: str, width: int, stride: int, p: str, x: jax.Array) -> jax.Array:
    """A basic (two 3x3) or bottleneck (1x1, 3x3 with the stride, 1x1 x4) residual block,
    called inside a compact module: its layers are that module's, named by torch's full paths
    (`p` = "layer1.0"), so the variables are flat like the state dict."""
    if kind == "basic":
        out = width
        y = nn.relu(bn(f"{p}.bn1")(conv(out, 3, stride, f"{p}.conv1")(x)))
        y = bn(f"{p}.bn2")(conv(out, 3, 1, f"{p}.conv2")(y))
    else:
        out = 4 * width
        y = nn.relu(bn(f"{p}.bn1")(conv(width, 1, 1, f"{p}.conv1")(x)))
        y = nn.relu(bn(f"{p}.bn2")(conv(width, 3, stride, f"{p}.conv2")(y)))
        y = bn(f"{p}.bn3")(conv(out, 1, 1, f"{p}.conv3")(y))
    if stride != 1 or x.shape[-1] != out:
        x = bn(f"{p}.downsample.1")(conv(out, 1, stride, f"{p}.downsample.0")(x))
    return nn.relu(y + x)


# the registry's entries: name, module factory, classifier bias key, description
REGISTRY = (
    torch_layout_spec(
        "resnet18",
        lambda n=1000: ResNet(18, n),
        "fc.bias",
        "torchvision ResNet-18 (pass --weights=resnet18-*.pth or .safetensors)",
    ),
    torch_layout_spec(
        "resnet50",
        lambda n=1000: ResNet(50, n),
        "fc.bias",
        "torchvision ResNet-50 (pass --weights=resnet50-*.pth or .safetensors)",
    ),
)
