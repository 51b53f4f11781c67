"""Registry of classifiers: model name -> network, preprocessing, weights, labels.

A `Classifier` is static (hashable) and maps uint8 images [B, H, W, C] to logits [B, N] with
its own preprocessing; its parameters are a separate pytree, passed to jitted code as an
argument (never baked in as constants).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxfool.nets.lenet import LeNet, zero_variables
from jaxfool.weights import npz

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
DIGIT_LABELS = tuple(str(d) for d in range(10))
MNIST_SHAPE = (28, 28, 1)


@dataclass(frozen=True)
class Classifier:
    """A network with its preprocessing. `logits(params, images_uint8) -> float32 [B, N]`."""

    name: str
    logits: Callable[[Any, jax.Array], jax.Array]
    image_shape: tuple[int, int, int]
    labels: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class LeNetLogits:
    """Caffe's MNIST input layer, then LeNet: (pixel - mean) * 1/256.

    params = {"net": LeNet variables, "mean": float32 [28, 28, 1]}; the mean is zero for the
    way both LeNets were trained, or the paper's MNIST mean image for its evaluation prototxt.
    """

    num_classes: int = 10

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        x = (images.astype(jnp.float32) - params["mean"]) * jnp.float32(1 / 256)
        return LeNet(self.num_classes).apply(params["net"], x)


def read_mean_image(path: str | Path, shape: tuple[int, int, int]) -> np.ndarray:
    """A mean image (.binaryproto or .npy) as float32 HWC `shape`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise npz.WeightsFileError(f"{path}: no such mean file")
    if path.suffix == ".npy":
        try:
            mean = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise npz.WeightsFileError(f"{path}: not a readable .npy mean file ({e})") from None
    else:
        from jaxfool.weights.caffemodel import read_binaryproto

        mean = read_binaryproto(path)
    mean = np.asarray(mean, np.float32)
    h, w, c = shape
    if mean.size != h * w * c:
        raise npz.WeightsFileError(
            f"{path}: mean image has shape {mean.shape}, expected {c}x{h}x{w} values"
        )
    # Caffe blobs are C, H, W (with a leading num); ours are H, W, C.
    return mean.reshape(c, h, w).transpose(1, 2, 0)


def _lenet(name: str, net_params: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    num_classes = int(net_params["params"]["ip2"]["bias"].shape[0])
    labels = DIGIT_LABELS + tuple(f"class {i}" for i in range(10, num_classes))
    params = {
        "net": jax.tree.map(jnp.asarray, net_params),
        "mean": jnp.zeros(MNIST_SHAPE, jnp.float32) if mean is None else jnp.asarray(mean),
    }
    return Classifier(name, LeNetLogits(num_classes), MNIST_SHAPE, labels[:num_classes]), params


def _load_lenet_npz(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    variables, _ = npz.load_params(path)
    try:
        num_classes = int(variables["params"]["ip2"]["bias"].shape[0])
    except (KeyError, TypeError, AttributeError):
        raise npz.WeightsFileError(f"{path}: no params/ip2/bias: not LeNet weights") from None
    npz.check_matches(path, variables, zero_variables(num_classes))
    return _lenet("lenet", variables, mean)


def _load_lenet_caffemodel(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    from jaxfool.weights.caffemodel import lenet_params_from_caffemodel

    return _lenet("lenet_paper", lenet_params_from_caffemodel(path), mean)


def photo_array(image: Image.Image, channels: int) -> np.ndarray:
    """uint8 [H, W, C] of a Pillow image: grayscale for C = 1, RGB for C = 3."""
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8)
    return array[..., None] if channels == 1 else array


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry. `photo_size`: photos are resized (bilinear, aspect not kept) to this
    square before the classifier's own preprocessing; None passes them at their own size."""

    name: str
    description: str
    image_shape: tuple[int, int, int]
    default_weights: Path | None
    loader: Callable[[Path, np.ndarray | None], tuple[Classifier, Any]]
    photo_size: int | None = None

    def prepare_photo(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, C] photo -> the array `classify.py` feeds to the classifier."""
        if self.photo_size is None or image.shape[:2] == (self.photo_size,) * 2:
            return image
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        return photo_array(pil.resize((self.photo_size,) * 2, Image.BILINEAR), image.shape[-1])


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "lenet",
            "Caffe MNIST LeNet trained by jaxfool (models/lenet_mnist.npz)",
            MNIST_SHAPE,
            MODELS_DIR / "lenet_mnist.npz",
            _load_lenet_npz,
            photo_size=28,
        ),
        ModelSpec(
            "lenet_paper",
            "the paper's own LeNet, Caffe .caffemodel lenet_iter_10000 (pass --weights)",
            MNIST_SHAPE,
            None,
            _load_lenet_caffemodel,
            photo_size=28,
        ),
    ]
}


def load_classifier(
    name: str, weights: str | Path | None = None, mean: str | Path | None = None
) -> tuple[Classifier, Any]:
    """Builds classifier `name` with its weights (default: the shipped file) and optional mean."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    spec = MODELS[name]
    path = Path(weights) if weights else spec.default_weights
    if path is None:
        raise npz.WeightsFileError(f"model {name} has no default weights: {spec.description}")
    if not path.is_file():
        raise npz.WeightsFileError(f"{path}: no such weights file for model {name}")
    mean_image = read_mean_image(mean, spec.image_shape) if mean else None
    return spec.loader(path, mean_image)
