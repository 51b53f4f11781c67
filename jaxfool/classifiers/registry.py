"""Registry of classifiers: model name -> network, preprocessing, weights, labels.

Each model is one file in `jaxfool/nets/` (its Flax module, input transform, weight loading and
`REGISTRY` entries); this module collects the entries into `MODELS` and holds what is shared:
the torch-layout networks' classifier (`TorchvisionLogits`, `register_torch_layout`), dtype
casting and `load_classifier`. The shared types (`Classifier`, `ModelSpec`, `InputSpace`) are in
`jaxfool.classifiers.protocol` and re-exported here.

`compute_dtype` ("float32", or "bfloat16" for accelerators) is the dtype of the network's forward
pass only: preprocessing stays float32, and the logits come back float32, so fitness is
compared in float32 log-probabilities either way (`with_compute_dtype`, `load_classifier`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxfool.base import npz
from jaxfool.classifiers import preprocess
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
from jaxfool.classifiers.nets.alexnet import AlexNetTorchvisionLogits  # noqa: F401
from jaxfool.classifiers.nets.caffenet import CaffeNetLogits  # noqa: F401
from jaxfool.classifiers.nets.efficientnet_lite import EfficientNetLiteLogits  # noqa: F401
from jaxfool.classifiers.nets.lenet import LeNetLogits, lenet_classifier  # noqa: F401
from jaxfool.classifiers.protocol import (  # noqa: F401  (re-exported: the registry's vocabulary)
    COMPUTE_DTYPES,
    DIGIT_LABELS,
    IMAGENET_SHAPE,
    LABELS_FILE,
    MNIST_SHAPE,
    MODELS_DIR,
    REPO_ROOT,
    Classifier,
    InputSpace,
    ModelSpec,
    TorchvisionSpace,
    cast_floats,
    class_labels,
    forward,
    imagenet_labels,
    photo_array,
    resize_photo,
)

# torchvision-layout networks, one file each: name -> (module factory(num_classes), the state
# dict's classifier bias, description); filled by `register_torch_layout` below
TORCHVISION_NETS: dict[str, tuple[Callable[..., nn.Module], str, str]] = {}


@dataclass(frozen=True)
class TorchvisionLogits:
    """A torchvision-layout network (`TORCHVISION_NETS`) on uint8 RGB [B, H, W, 3], with
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


def _torchvision_build(name: str):
    def build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        if mean is not None:
            raise ValueError(f"{name}: a mean image is for the Caffe models")
        bias_key = TORCHVISION_NETS[name][1]
        n = int(variables["params"][bias_key.rsplit(".", 1)[0]]["bias"].shape[0])
        params = jax.tree.map(jnp.asarray, variables)
        logits = TorchvisionLogits(name, n)
        return Classifier(name, logits, IMAGENET_SHAPE, class_labels(n)), params

    return build


def _torchvision_loader(name: str):
    def load(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        from jaxfool.classifiers.weights import torch_layout
        from jaxfool.classifiers.weights.cache import cached_variables
        from jaxfool.classifiers.weights.convert import reference_params
        from jaxfool.classifiers.weights.torch_file import load_state_dict

        factory, bias_key, _ = TORCHVISION_NETS[name]

        def convert() -> dict[str, Any]:
            sd = load_state_dict(path)
            if not isinstance(sd, dict):
                raise npz.WeightsFileError(f"{path}: not a state dict")
            net = factory(torch_layout.num_outputs(sd, bias_key))
            ref = reference_params(net, (1, 224, 224, 3))
            return torch_layout.variables_from_state_dict(sd, ref, name, str(path))

        return _torchvision_build(name)(cached_variables(path, name, convert), mean)

    return load


MODELS: dict[str, ModelSpec] = {
    spec.name: spec for module in (lenet, caffenet, alexnet, efficientnet_lite)
    for spec in module.REGISTRY
}  # fmt: skip


def register_torch_layout(
    name: str, factory: Callable[..., nn.Module], bias_key: str, description: str
) -> None:
    """Registers an ImageNet network whose Flax layers are named by its torch state dict's paths
    (`weights.torch_layout`): `factory(num_classes)` builds it, `bias_key` is the
    state dict's classifier bias (the class count of a file). It gets torchvision's eval
    transform, `.pth` / `.safetensors` loading, random weights and every script's `--model`."""
    TORCHVISION_NETS[name] = (factory, bias_key, description)
    MODELS[name] = ModelSpec(
        name, description, IMAGENET_SHAPE, None, _torchvision_loader(name),
        (factory(), 224, 3), _torchvision_build(name),
    )  # fmt: skip


for _module in (resnet, vgg, mobilenet_v2, vit):  # adding a model: its file, and its name here
    for _entry in _module.REGISTRY:
        register_torch_layout(*_entry)


def with_center_crop(clf: Classifier) -> Classifier:
    """CaffeNet / Caffe AlexNet scoring the centre 227 crop instead of the paper's 10 crops."""
    if not isinstance(clf.logits, CaffeNetLogits):
        raise ValueError(f"{clf.name} has no 10-crop fitness to turn off")
    return dataclasses.replace(clf, logits=dataclasses.replace(clf.logits, ten_crop=False))


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


RANDOM_WEIGHTS = "random"


def weights_file(name: str, weights: str | Path | None = None) -> str | None:
    """The weights a run of model `name` reads, for its records: `weights`, else the
    registry's shipped file (None for neither, e.g. your own model without --weights)."""
    spec = MODELS.get(name)  # None: your own model
    path = weights or (spec.default_weights if spec else None)
    return None if path is None else str(path)


def load_classifier(
    name: str,
    weights: str | Path | None = None,
    mean: str | Path | None = None,
    compute_dtype: str = "float32",
) -> tuple[Classifier, Any]:
    """Builds classifier `name` with its weights (default: the shipped file) and optional mean,
    its network computing in `compute_dtype` (see `with_compute_dtype`).

    weights="random": randomly initialised parameters (fixed key), for benchmarks and memory
    studies of models whose weight files are not at hand. `name` may also be
    'package.module:factory' (`custom_model`): the factory gets `weights` as given.
    """
    from jaxfool.classifiers import custom as custom_model

    if name not in MODELS and custom_model.is_spec(name):  # your own: package.module:factory
        if mean:
            raise ValueError(f"{name}: a mean image is for the Caffe models, not a custom model")
        clf, params = custom_model.load(name, weights)
        return with_compute_dtype(clf, params, compute_dtype)
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)} or 'package.module:factory'"
        )
    spec = MODELS[name]
    mean_image = None
    if mean:
        from jaxfool.classifiers.weights.convert import caffe_mean_image

        mean_image = caffe_mean_image(mean, spec.image_shape)
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype {compute_dtype!r}: choose one of {COMPUTE_DTYPES}")
    if str(weights) == RANDOM_WEIGHTS:
        clf, params = spec.build(spec.random_variables(jax.random.key(0)), mean_image)
    else:
        path = Path(weights) if weights else spec.default_weights
        if path is None:
            raise npz.WeightsFileError(f"model {name} has no default weights: {spec.description}")
        if not path.is_file():
            raise npz.WeightsFileError(f"{path}: no such weights file for model {name}")
        clf, params = spec.loader(path, mean_image)
    return with_compute_dtype(clf, params, compute_dtype)
