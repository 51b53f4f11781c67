"""The classifier and loader shared by the torch-layout networks (`resnet`, `vgg`, `mobilenet_v2`,
`vit`): Flax modules whose layers are named by their torch state dict's paths, so one converter
(`jaxfool.classifiers.weights.torch_layout`) reads their `.pth` and `.safetensors` files by rule.

Each network's file lists its registry entries as `torch_layout_spec(name, factory, bias_key,
description)`: `factory(num_classes)` builds the module and `bias_key` is the state dict's
classifier bias (a file's class count). Every such model gets torchvision's eval transform
(resize 256, centre crop 224, mean / std: `TorchvisionLogits`), weight loading through the
converted-weights cache, random weights and every script's `--model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

import jaxfool.classifiers.preprocess as preprocess
from jaxfool.base import npz
from jaxfool.classifiers.protocol import (
    IMAGENET_SHAPE,
    Classifier,
    ModelSpec,
    TorchvisionSpace,
    class_labels,
    forward,
)
from jaxfool.classifiers.weights import torch_layout
from jaxfool.classifiers.weights.cache import cached_variables
from jaxfool.classifiers.weights.state_dict import load_state_dict

# name -> (module factory(num_classes), the state dict's classifier bias, description); filled
# by `torch_layout_spec`
TORCHVISION_NETS: dict[str, tuple[Callable[..., nn.Module], str, str]] = {}


@dataclass(frozen=True)
class TorchvisionLogits:
    """A torch-layout network (`TORCHVISION_NETS`) on uint8 RGB [B, H, W, 3], with
    torchvision's eval transform (resize 256, centre crop 224, mean / std)."""

    model: str
    num_classes: int = 1000
    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = None

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        x = preprocess.torchvision_eval_input(images)
        return forward(self.network(), params, x, self.compute_dtype)

    def network(self) -> nn.Module:
        return TORCHVISION_NETS[self.model][0](self.num_classes)

    def input_space(self) -> TorchvisionSpace:
        return TorchvisionSpace.of(self.network())


def _build(name: str):
    def build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        if mean is not None:
            raise ValueError(f"{name}: a mean image is for the Caffe models")
        bias_key = TORCHVISION_NETS[name][1]
        n = int(variables["params"][bias_key.rsplit(".", 1)[0]]["bias"].shape[0])
        params = jax.tree.map(jnp.asarray, variables)
        logits = TorchvisionLogits(name, n)
        return Classifier(name, logits, IMAGENET_SHAPE, class_labels(n)), params

    return build


def _loader(name: str):
    def load(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        factory, bias_key, _ = TORCHVISION_NETS[name]

        def convert() -> dict[str, Any]:
            sd = load_state_dict(path)
            if not isinstance(sd, dict):
                raise npz.WeightsFileError(f"{path}: not a state dict")
            net = factory(torch_layout.num_outputs(sd, bias_key))
            ref = torch_layout.reference_params(net, (1, 224, 224, 3))
            return torch_layout.variables_from_state_dict(sd, ref, name, str(path))

        return _build(name)(cached_variables(path, name, convert), mean)

    return load


def torch_layout_spec(
    name: str, factory: Callable[..., nn.Module], bias_key: str, description: str
) -> ModelSpec:
    """The registry entry of a torch-layout ImageNet network (see the module docstring); its
    module is also recorded in `TORCHVISION_NETS`, where its classifier finds it by name."""
    TORCHVISION_NETS[name] = (factory, bias_key, description)
    return ModelSpec(
        name, description, IMAGENET_SHAPE, None, _loader(name), (factory(), 224, 3), _build(name)
    )
