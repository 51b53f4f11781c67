"""The retraining experiment's classifiers, whose output count grows by the fooling class.

MNIST: LeNet with 10 or 11 outputs (`mnist_classifier`). Image folders: the tiny net or
CaffeNet with as many outputs as the folder has classes, plus one (`FolderLogits`,
`folder_classifier`). They are not `registry.MODELS` entries: a registry entry has one
image shape and builds its labels from the weights alone, while a folder net's image size and
class names come from the folder it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfool.classifiers.nets.caffenet import CaffeNet, caffe_fitness
from jaxfool.classifiers.nets.lenet import lenet_classifier
from jaxfool.classifiers.nets.tiny import TinyNet
from jaxfool.classifiers.protocol import Classifier

Params = Any
ARCHS = ("tiny", "caffenet")
MNIST_CLASSIFIER_NAME = "lenet_retrain"


def mnist_classifier(net_params: Params) -> tuple[Classifier, Any]:
    """LeNet params (10 or 11 outputs) as a classifier; one name, so jit caches are shared."""
    return lenet_classifier(MNIST_CLASSIFIER_NAME, {"params": net_params})


@dataclass(frozen=True)
class FolderLogits:
    """uint8 RGB [B, S, S, 3] -> logits [B, num_classes] of a folder network.

    tiny: x / 255 - 0.5. caffenet: CaffeNet with any number of outputs (the registry's
    CaffeNetLogits is fixed at 1000): BGR minus the mean, then the paper's 10 crops with the
    softmax averaged (`ten_crop`, for evolution) or the centre crop (training, accuracy).
    params = {"net": Flax variables, "mean_227": float32 [227, 227, 3] (caffenet only)}.
    """

    arch: str
    num_classes: int
    ten_crop: bool = False

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        if self.arch == "tiny":
            x = images.astype(jnp.float32) / 255.0 - 0.5
            return TinyNet(self.num_classes).apply(params["net"], x)
        net = CaffeNet(num_classes=self.num_classes)
        return caffe_fitness(net, params["net"], images, params["mean_227"], self.ten_crop)


def folder_module(arch: str, num_classes: int) -> nn.Module:
    """The Flax module of folder architecture `arch` with `num_classes` outputs."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return TinyNet(num_classes) if arch == "tiny" else CaffeNet(num_classes=num_classes)


def num_outputs(net: Params) -> int:
    """Output count of folder-net variables: the bias of the last Dense layer."""
    layer = net["params"]["fc" if "fc" in net["params"] else "fc8"]
    return int(layer["bias"].shape[0])


def folder_classifier(
    arch: str, class_names: Sequence[str], consts: dict[str, Any], image_size: int, net: Params
) -> tuple[Classifier, Any]:
    """The folder net as a Classifier for evolution: 10 crops for CaffeNet (the paper's
    fitness), the plain input for the tiny net. Labels: the class names, then "fooling"."""
    k = num_outputs(net)
    labels = tuple(class_names) + ("fooling",) * (k - len(class_names))
    logits = FolderLogits(arch, k, ten_crop=arch == "caffenet")
    shape = (image_size, image_size, 3)
    return Classifier(f"{arch}_retrain", logits, shape, labels[:k]), {"net": net, **consts}
