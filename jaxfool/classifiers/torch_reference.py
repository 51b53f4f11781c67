"""Independent torch implementations of jaxfool's networks, for parity tests and the benchmark.

Test-only reference implementations: torch is an optional test extra (`jaxfool[torch]`), never a
runtime need, so import this module only where torch is installed (tests skip without it).
Each network is written with torch's own layers, not from the Flax code, with the module names
of the checkpoints it stands for (Caffe layer names, torchvision's AlexNet, lukemelas'
EfficientNet), so its state dict goes through the same converters as the real weights.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# --- LeNet (Caffe's MNIST example) ---------------------------------------------------------------


def lenet() -> nn.Module:
    """Caffe's MNIST LeNet: two conv + max-pool stages without ReLU, ip1 (ReLU), ip2."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    ).eval()  # fmt: skip


# --- CaffeNet / Caffe AlexNet / torchvision AlexNet ---------------------------------------------


def kaiming_(model: nn.Module, seed: int) -> nn.Module:
    """Kaiming-normal weights (fan in, ReLU gain) and N(0, 0.1) biases: non-trivial logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
                m.bias.normal_(0.0, 0.1, generator=gen)
    return model.eval()


def caffenet(lrn_before_pool: bool, seed: int = 0) -> nn.Module:
    """CaffeNet / Caffe AlexNet (lrn_before_pool): grouped convs, ceil-mode pooling,
    LRN(5, 1e-4, .75, 1), with Caffe's layer names; Kaiming weights from `seed`."""

    def stage(i):
        pool = (f"pool{i}", nn.MaxPool2d(3, 2, ceil_mode=True))
        norm = (f"norm{i}", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0))
        return [norm, pool] if lrn_before_pool else [pool, norm]

    layers = [
        ("conv1", nn.Conv2d(3, 96, 11, stride=4)), ("relu1", nn.ReLU()), *stage(1),
        ("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=2)), ("relu2", nn.ReLU()), *stage(2),
        ("conv3", nn.Conv2d(256, 384, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=2)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=2)), ("relu5", nn.ReLU()),
        ("pool5", nn.MaxPool2d(3, 2, ceil_mode=True)), ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(9216, 4096)), ("relu6", nn.ReLU()),
        ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()),
        ("fc8", nn.Linear(4096, 1000)),
    ]  # fmt: skip
    return kaiming_(nn.Sequential(OrderedDict(layers)), seed)


class AlexNet(nn.Module):
    """torchvision.models.AlexNet's layout (the same state-dict keys), without torchvision."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def alexnet_torchvision(seed: int = 0) -> nn.Module:
    """torchvision's AlexNet with Kaiming weights from `seed`, in eval mode."""
    return kaiming_(AlexNet(), seed)


# --- EfficientNet-Lite (lukemelas' module names, ml-illustrated's build rules) -----------------


def same_pad(size: int, kernel: int, stride: int) -> int:
    """TF 'SAME' total padding along one axis (the odd pixel goes bottom/right)."""
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


class SameConv(nn.Conv2d):
    """lukemelas' Conv2dStaticSamePadding: TF 'SAME' padding done by hand, then no padding."""

    def forward(self, x):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph, pw = same_pad(x.shape[2], kh, sh), same_pad(x.shape[3], kw, sw)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class MBConv(nn.Module):
    """An inverted-residual block without squeeze-excite: expand, depthwise, project (ReLU6)."""

    def __init__(self, k, s, e, cin, cout):
        super().__init__()
        mid, self.skip, self.expand = cin * e, s == 1 and cin == cout, e != 1
        if self.expand:
            self._expand_conv, self._bn0 = SameConv(cin, mid, 1, bias=False), batch_norm(mid)
        self._depthwise_conv = SameConv(mid, mid, k, s, groups=mid, bias=False)
        self._bn1 = batch_norm(mid)
        self._project_conv, self._bn2 = SameConv(mid, cout, 1, bias=False), batch_norm(cout)

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return y + x if self.skip else y


# (repeats, kernel, stride, expansion, in, out) of B0's stages, before width/depth scaling
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]  # fmt: skip


def round_filters(channels: int, width: float) -> int:
    """Channels scaled by `width`, rounded to a multiple of 8 (never down by more than 10%)."""
    c = channels * width
    new = max(8, int(c + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * c else new)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite of `width`/`depth` multipliers: stem and head fixed (fix_head_stem)."""

    def __init__(self, width: float, depth: float):
        super().__init__()
        self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2, bias=False), batch_norm(32)
        blocks = []
        for i, (r, k, s, e, cin, cout) in enumerate(STAGES):
            r = r if i in (0, len(STAGES) - 1) else math.ceil(depth * r)
            cin = 32 if i == 0 else round_filters(cin, width)
            cout = round_filters(cout, width)
            blocks.append(MBConv(k, s, e, cin, cout))
            blocks += [MBConv(k, 1, e, cout, cout) for _ in range(r - 1)]
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = SameConv(cout, 1280, 1, bias=False), batch_norm(1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


def efficientnet_lite(width: float, depth: float) -> nn.Module:
    """EfficientNet-Lite (lite0: 1.0, 1.0) with torch's default init, in eval mode."""
    return EfficientNetLite(width, depth).eval()


def randomize(net: nn.Module, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights and BN statistics, scaled to keep activations O(1), put into `net`;
    returns its state dict as NumPy arrays."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if t.ndim > 1:  # conv / linear weight: He-style scale
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2.0 / fan_in))
            elif name.endswith(("weight", "running_var")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def forward(model: nn.Module, x_nchw: np.ndarray) -> np.ndarray:
    """The model's outputs for a NumPy NCHW batch, without autograd."""
    with torch.no_grad():
        return model(torch.from_numpy(x_nchw)).numpy()


def torchvision_model(name: str, seed: int = 0) -> nn.Module:
    """torchvision's own `name` (resnet18, vgg16, vit_b_16, ...) in eval mode, random weights.

    The index's torchvision wheel is built against the CUDA torch; its C++ operator
    registrations (`torchvision._meta_registrations`) fail beside the CPU torch, and only the
    Python model definitions are needed, so that module is stubbed out before the import."""
    import sys
    import types

    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    from torchvision import models

    torch.manual_seed(seed)
    return getattr(models, name)().eval()
