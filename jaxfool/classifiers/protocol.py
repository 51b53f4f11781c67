"""What every model file provides, and the pieces they share (no network code here).

A model file (`jaxfool/classifiers/nets/<model>.py`) holds the Flax module, its input transform
(a `*Logits` class: uint8 image -> network input -> logits, and `input_space()`: the same
transform as an `InputSpace` for gradient ascent), its converter from the weight files people
have, its loading, and its registry entries (`REGISTRY`, `ModelSpec`s).
`jaxfool.classifiers.registry` collects the entries into `MODELS`.

A `*Logits` object may declare settings as dataclass fields that generic code changes with
`dataclasses.replace`: `compute_dtype` (the forward pass's dtype; `net_params` names the params
entry holding the network's weights, None: all of them) and `ten_crop` (the paper's 10-crop
fitness, which `registry.with_center_crop` turns off).

A `Classifier` is static (hashable) and maps uint8 images [B, H, W, C] to logits [B, N] with
its own preprocessing; its parameters are a separate pytree, passed to jitted code as an
argument (never baked in as constants).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from PIL import Image

from jaxfool.classifiers.preprocess import TORCHVISION_MEAN, TORCHVISION_STD

DIGIT_LABELS = tuple(str(d) for d in range(10))
MNIST_SHAPE = (28, 28, 1)
IMAGENET_SHAPE = (256, 256, 3)  # what evolution makes: the paper's 256 x 256 colour images
COMPUTE_DTYPES = ("float32", "bfloat16")
LABELS_FILE = Path(__file__).resolve().parent / "data" / "imagenet_labels.txt"


def shipped_file(name: str) -> Path:
    """A file of the repository's `models/` folder: the weights and model cards jaxfool ships.

    An installed jaxfool (`pip install .`, a wheel) carries the folder as the data-only package
    `jaxfool.models` (see setup.py). Run from a source checkout (on `PYTHONPATH`, or installed
    editable) it is the checkout's own folder, also when another checkout is installed.
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "models" / name).is_file():
        return checkout / "models" / name
    try:
        return Path(str(importlib.resources.files("jaxfool.models").joinpath(name)))
    except ModuleNotFoundError:  # neither installed nor a checkout: named for the error
        return checkout / "models" / name


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard (sorted WNID) order."""
    return tuple(LABELS_FILE.read_text().splitlines())


def class_labels(n: int) -> tuple[str, ...]:
    """ImageNet's labels for a 1000-way head, class indices for any other."""
    return imagenet_labels() if n == 1000 else tuple(f"class {i}" for i in range(n))


def cast_floats(tree: Any, dtype: Any) -> Any:
    """`tree` with its floating-point leaves cast to `dtype` (a no-op where they already are)."""

    def cast(a):
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree.map(cast, tree)


def forward(module: nn.Module, variables: Any, x: jax.Array, compute_dtype: str) -> jax.Array:
    """`module.apply(variables, x)` in `compute_dtype` (weights and input cast), float32 out.

    At float32 every cast is a no-op: the network's computation is unchanged.
    """
    dtype = jnp.dtype(compute_dtype)
    return module.apply(cast_floats(variables, dtype), x.astype(dtype)).astype(jnp.float32)


@dataclass(frozen=True)
class Classifier:
    """A network with its preprocessing. `logits(params, images_uint8) -> float32 [B, N]`.
    Optional: `logits.for_input_grads()`, logits with the same forward values that are faster
    to differentiate in the image (the gradient emitters use it where present)."""

    name: str
    logits: Callable[[Any, jax.Array], jax.Array]
    image_shape: tuple[int, int, int]
    labels: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def compute_dtype(self) -> str:
        """The network's forward-pass dtype (float32 for logits without the setting)."""
        return getattr(self.logits, "compute_dtype", "float32")


def resize_photo(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, C] photo resized (bilinear, aspect not kept) to height x width."""
    if image.shape[:2] == (height, width):
        return image
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    return photo_array(pil.resize((width, height), Image.BILINEAR), image.shape[-1])


def photo_array(image: Image.Image, channels: int) -> np.ndarray:
    """uint8 [H, W, C] of a Pillow image: grayscale for C = 1, RGB for C = 3."""
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8)
    return array[..., None] if channels == 1 else array


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    network: (the Flax module with its default head, its input size, channels): what the
    benchmarks time alone and what random weights initialise. loader(path, mean) and
    build(variables, mean) -> (Classifier, params). photo_size: photos are resized (bilinear,
    aspect not kept) to this square before the classifier's own preprocessing; None passes
    them at their own size. ten_crop: the model's fitness is the paper's 10-crop average (its
    logits have a `ten_crop` setting, on by default; `registry.with_center_crop` turns it off).
    """

    name: str
    description: str
    image_shape: tuple[int, int, int]
    default_weights: Path | None
    loader: Callable[[Path, np.ndarray | None], tuple[Classifier, Any]]
    network: tuple[nn.Module, int, int]
    build: Callable[[Any, np.ndarray | None], tuple[Classifier, Any]]
    photo_size: int | None = None
    ten_crop: bool = False

    def random_variables(self, key: jax.Array) -> Any:
        """Randomly initialised variables of the network (for benchmarks and memory studies)."""
        module, size, channels = self.network
        return jax.jit(module.init)(key, jnp.zeros((1, size, size, channels), jnp.float32))

    def prepare_photo(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, C] photo -> the array `classify.py` feeds to the classifier."""
        if self.photo_size is None:
            return image
        return resize_photo(image, self.photo_size, self.photo_size)


# --- input spaces (gradient ascent) ---------------------------------------------------------------


@dataclass(frozen=True)
class InputSpace:
    """A net's preprocessed input space: the net on float input and the map to/from pixels.

    shape: the net input [h, w, c]. image_shape: the classifier's uint8 image holding it at
    `offset` (the classifier's eval crop), so `from_image` is exactly its preprocessing.
    grey_scale: input units per grey level, per channel (the map is affine, diagonal).
    Subclasses implement `net`, `encode` (0..255 RGB pixels -> input) and `decode`.
    """

    shape: tuple[int, int, int]
    image_shape: tuple[int, int, int]
    offset: tuple[int, int]
    grey_scale: tuple[float, ...]

    def net(self, params: Any, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def encode(self, params: Any, pixels: jax.Array) -> jax.Array:
        raise NotImplementedError

    def decode(self, params: Any, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def bounds(self, params: Any) -> tuple[jax.Array, jax.Array]:
        """(lower, upper) [h, w, c]: the input of pixel value 0 and of 255."""
        zeros = jnp.zeros(self.shape, jnp.float32)
        return self.encode(params, zeros), self.encode(params, zeros + 255.0)

    def from_image(self, params: Any, images: jax.Array) -> jax.Array:
        """uint8 images [..., H, W, C] -> net input [..., h, w, c] (crop, then encode)."""
        (top, left), (h, w, _) = self.offset, self.shape
        crop = images[..., top : top + h, left : left + w, :].astype(jnp.float32)
        return self.encode(params, crop)

    def to_image(self, params: Any, x: jax.Array) -> jax.Array:
        """Net input [..., h, w, c] -> uint8 images [..., H, W, C]: pixels rounded and clipped,
        the border outside the crop filled with the mean colour (no effect on the crop)."""
        pixels = jnp.clip(jnp.round(self.decode(params, x)), 0, 255).astype(jnp.uint8)
        (top, left), (h, w, _), (hh, ww, _) = self.offset, self.shape, self.image_shape
        if (h, w) == (hh, ww):
            return pixels
        mean = jnp.round(jnp.mean(self.decode(params, jnp.zeros(self.shape)), axis=(0, 1)))
        canvas = jnp.broadcast_to(mean.astype(jnp.uint8), (*x.shape[:-3], *self.image_shape))
        return canvas.at[..., top : top + h, left : left + w, :].set(pixels)


@dataclass(frozen=True)
class TorchvisionSpace(InputSpace):
    """torchvision normalisation (pixel / 255 - mean) / std of the 224 centre crop of 256, for
    torchvision's AlexNet and the torch-layout networks; `module` is the network."""

    module: nn.Module | None = None

    @classmethod
    def of(cls, module: nn.Module) -> TorchvisionSpace:
        scale = tuple(1 / (255 * s) for s in TORCHVISION_STD)
        return cls((224, 224, 3), IMAGENET_SHAPE, (16, 16), scale, module)

    def net(self, params, x):
        return self.module.apply(params, x)

    def encode(self, params, pixels):
        mean, std = jnp.asarray(TORCHVISION_MEAN), jnp.asarray(TORCHVISION_STD)
        return (pixels / 255.0 - mean) / std

    def decode(self, params, x):
        mean, std = jnp.asarray(TORCHVISION_MEAN), jnp.asarray(TORCHVISION_STD)
        return (x * std + mean) * 255.0
