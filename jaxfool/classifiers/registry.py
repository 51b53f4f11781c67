"""Registry of classifiers: model name -> network, preprocessing, weights, labels.

Each model is one file in `jaxfool/classifiers/nets/` (its Flax module, input transform,
converter, loading and `REGISTRY` entries); this module collects the entries into `MODELS` and
holds what works on any model: `load_classifier`, the settings a classifier may declare
(`with_compute_dtype`, `with_center_crop`, `fitness_name`), and model references as scripts
write them (`ModelRef`, `parse_model_ref`).

`compute_dtype` ("float32", or "bfloat16" for accelerators) is the dtype of the network's forward
pass only: preprocessing stays float32, and the logits come back float32, so fitness is
compared in float32 log-probabilities either way (`with_compute_dtype`, `load_classifier`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

import jaxfool.classifiers.custom as custom
from jaxfool.base import npz
from jaxfool.base.fileio import check_readable_file, remembered_sha256
from jaxfool.classifiers.nets import (
    alexnet,
    caffenet,
    efficientnet_lite,
    lenet,
    mobilenet_v2,
    resnet,
    vgg,
    vit,
)
from jaxfool.classifiers.nets.torchvision import torch_layout_spec
from jaxfool.classifiers.protocol import COMPUTE_DTYPES, Classifier, ModelSpec, cast_floats
from jaxfool.classifiers.weights.caffemodel import caffe_mean_image

# adding a model: its file in nets/, and its module here
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for module in (lenet, caffenet, alexnet, efficientnet_lite, resnet, vgg, mobilenet_v2, vit)
    for spec in module.REGISTRY
}
RANDOM_WEIGHTS = "random"


def register_torch_layout(
    name: str, factory: Callable[..., nn.Module], bias_key: str, description: str
) -> None:
    """Registers an ImageNet network whose Flax layers are named by its torch state dict's paths
    at run time (`nets.torchvision.torch_layout_spec`): `factory(num_classes)` builds it,
    `bias_key` is the state dict's classifier bias (the class count of a file)."""
    MODELS[name] = torch_layout_spec(name, factory, bias_key, description)


def has_ten_crop(name: str) -> bool:
    """Whether registry model `name` scores the paper's 10 crops (False for your own model)."""
    spec = MODELS.get(name)
    return spec is not None and spec.ten_crop


def with_center_crop(clf: Classifier) -> Classifier:
    """`clf` scoring the centre crop instead of the paper's 10 crops (classifiers whose logits
    declare a `ten_crop` setting: CaffeNet, Caffe's AlexNet); ValueError for the others."""
    if not (dataclasses.is_dataclass(clf.logits) and hasattr(clf.logits, "ten_crop")):
        raise ValueError(f"{clf.name} has no 10-crop fitness to turn off")
    return dataclasses.replace(clf, logits=dataclasses.replace(clf.logits, ten_crop=False))


def fitness_name(clf: Classifier) -> str:
    """What `clf` scores: "10-crop" (the paper's average over 10 crops), "centre crop" (such a
    model with it turned off) or "single image" (every other classifier)."""
    ten_crop = getattr(clf.logits, "ten_crop", None)
    if ten_crop is None:
        return "single image"
    return "10-crop" if ten_crop else "centre crop"


def with_compute_dtype(clf: Classifier, params: Any, compute_dtype: str) -> tuple[Classifier, Any]:
    """`clf` running its network in `compute_dtype`, and `params` with the network's weights
    stored in it (cast once here, not in every call). ValueError for an unknown dtype, or a
    classifier without the setting."""
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype {compute_dtype!r}: choose one of {COMPUTE_DTYPES}")
    if compute_dtype == clf.compute_dtype:
        return clf, params
    if not hasattr(clf.logits, "compute_dtype"):
        raise ValueError(f"{clf.name} has no compute_dtype setting")
    logits = dataclasses.replace(clf.logits, compute_dtype=compute_dtype)
    dtype, key = jnp.dtype(compute_dtype), clf.logits.net_params
    if key is None:
        params = cast_floats(params, dtype)
    else:
        params = {**params, key: cast_floats(params[key], dtype)}
    return dataclasses.replace(clf, logits=logits), params


def weights_file(name: str, weights: str | Path | None = None) -> str | None:
    """The weights file a run of model `name` reads: `weights`, else the registry's default
    (None for neither, e.g. your own model without --weights)."""
    spec = MODELS.get(name)  # None: your own model
    path = weights or (spec.default_weights if spec else None)
    return None if path is None else str(path)


def load_classifier(
    name: str,
    weights: str | Path | None = None,
    mean: str | Path | None = None,
    compute_dtype: str = "float32",
) -> tuple[Classifier, Any]:
    """Builds classifier `name` with its weights (default: the registry's) and optional mean,
    its network computing in `compute_dtype` (see `with_compute_dtype`).

    weights="random": randomly initialised parameters (fixed key), for benchmarks and memory
    studies of models whose weight files are not at hand. `name` may also be
    'package.module:factory' (`custom`): the factory gets `weights` as given.
    """
    if name not in MODELS and custom.is_spec(name):  # your own: package.module:factory
        if mean:
            raise ValueError(f"{name}: a mean image is for the Caffe models, not a custom model")
        clf, params = custom.load(name, weights)
        return with_compute_dtype(clf, params, compute_dtype)
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)} or 'package.module:factory'"
        )
    spec = MODELS[name]
    mean_image = caffe_mean_image(mean, spec.image_shape) if mean else None
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype {compute_dtype!r}: choose one of {COMPUTE_DTYPES}")
    if str(weights) == RANDOM_WEIGHTS:
        clf, params = spec.build(spec.random_variables(jax.random.key(0)), mean_image)
    else:
        path = Path(weights) if weights else spec.default_weights
        if path is None:
            raise npz.WeightsFileError(f"model {name} has no default weights: {spec.description}")
        check_readable_file(path, npz.WeightsFileError, f"weights file for model {name}")
        clf, params = spec.loader(path, mean_image)
    return with_compute_dtype(clf, params, compute_dtype)


# --- model references: 'name[:weights[:mean]]' ----------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model by registry name (or 'package.module:factory'), weights file (None: the registry
    default) and mean file; `sha256`: the weights' digest when known (a run's weights record),
    which identifies them on any machine."""

    name: str
    weights: str | None = None
    mean: str | None = None
    sha256: str | None = None

    def key(self) -> tuple[str, str | None, str | None]:
        """Identity for matching one reference to another: the weights by their sha256 (their
        resolved path where the file is not at hand), the mean file's resolved path."""

        def norm(p: str | None) -> str | None:
            return str(Path(p).expanduser().resolve()) if p else None

        return (self.name, self.weights_identity(), norm(self.mean))

    def weights_identity(self) -> str | None:
        """The weights' sha256 (from the record, or of the file, or of the registry default),
        else their resolved path; None for a model without weights."""
        if self.sha256:
            return self.sha256
        path = weights_file(self.name, self.weights) if self.weights != RANDOM_WEIGHTS else None
        if path is None:
            return self.weights
        path = Path(path).expanduser()
        return remembered_sha256(path) if path.is_file() else str(path.resolve())

    def label(self) -> str:
        """A short name: `name`, `name:file` or `name:file+mean`."""
        text = self.name if not self.weights else f"{self.name}:{Path(self.weights).name}"
        return text + ("+mean" if self.mean else "")


def parse_model_ref(text: str) -> ModelRef:
    """'name[:weights[:mean]]' -> ModelRef ('lenet', 'lenet:w.npz', 'lenet_paper:W:MEAN');
    the name may be your own model's 'package.module:factory' ('tests.my_mlp:factory:w.npz').
    ValueError for text of another form."""
    parts = text.strip().split(":")
    if len(parts) > 1 and parts[0] not in MODELS and custom.is_spec(f"{parts[0]}:{parts[1]}"):
        parts = [f"{parts[0]}:{parts[1]}", *parts[2:]]
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"{text!r}: expected name[:weights[:mean]]")
    weights = parts[1] if len(parts) > 1 and parts[1] else None
    mean = parts[2] if len(parts) > 2 and parts[2] else None
    return ModelRef(parts[0], weights, mean)
