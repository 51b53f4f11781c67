"""Input pipelines of the ImageNet models, as pure `jax.numpy` functions.

Every function takes a batch of images [B, H, W, 3] with a static shape, works inside `jit`, and
returns float32. Resampling weights are built with NumPy from the static shapes at trace time,
so under `jit` they are constants and the work is a few small matrix products.

- EfficientNet-Lite (TF checkpoints): `efficientnet_eval_crop`, the official TF eval transform.
- Caffe CaffeNet / AlexNet: `caffe_center_crop`, `caffe_ten_crops` (the paper's 10-crop fitness).
- torchvision models: `torchvision_eval_input`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EFFICIENTNET_MEAN_RGB = 127.0
EFFICIENTNET_STDDEV_RGB = 128.0
EFFICIENTNET_CROP_PADDING = 32

CAFFE_SIZE, CAFFE_CROP = 256, 227
# (row, column) offsets of the paper's 10 crops: top-left, top-right, bottom-left, bottom-right,
# centre; the other five are the same crops mirrored left-right.
CAFFE_CROP_OFFSETS = ((0, 0), (0, 29), (29, 0), (29, 29), (14, 14))

TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)

_HIGHEST = jax.lax.Precision.HIGHEST  # exact float32 products on GPU/TPU too


# --- TF1 `tf.image.resize_bicubic` ----------------------------------------------------------------


def _tf_cubic_table(a: float = -0.75, table_size: int = 1024) -> np.ndarray:
    """TF's cubic coefficient table (`resize_bicubic_op.cc`, `InitCoeffsTable`), float32."""
    x = (np.arange(table_size + 1) / table_size).astype(np.float32).astype(np.float64)
    near = ((a + 2) * x - (a + 3)) * x * x + 1  # weight at distance x
    x1 = x + 1
    far = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a  # weight at distance x + 1
    return np.stack([near, far], axis=1).astype(np.float32)


def tf_resize_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """float32 [out_size, in_size]: the 1-D weights of TF1 `resize_bicubic` (legacy defaults).

    align_corners=False, half_pixel_centers=False: output pixel i samples input position
    i * in/out, with Keys' cubic at a = -0.75, the fractional offset quantised to 1/1024, and
    out-of-range taps clamped to the edge pixel (their weight goes to the edge).
    """
    table = _tf_cubic_table()
    scale = np.float32(in_size) / np.float32(out_size)
    pos = np.arange(out_size, dtype=np.float32) * scale
    base = np.floor(pos)
    offset = np.rint((pos - base) * np.float32(1024)).astype(np.int64)  # lrintf: half to even
    weights = np.stack(
        [table[offset, 1], table[offset, 0], table[1024 - offset, 0], table[1024 - offset, 1]],
        axis=1,
    )
    taps = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3), 0, in_size - 1)
    matrix = np.zeros((out_size, in_size), np.float32)
    np.add.at(matrix, (np.arange(out_size)[:, None], taps), weights)
    return matrix


def tf_resize_bicubic(images: jax.Array, height: int, width: int) -> jax.Array:
    """[B, H, W, C] -> float32 [B, height, width, C], as TF1 `tf.image.resize_bicubic`.

    No clipping: like TF, the output can overshoot the input range a little.
    """
    _, h, w, _ = images.shape
    wy = jnp.asarray(tf_resize_bicubic_matrix(h, height))
    wx = jnp.asarray(tf_resize_bicubic_matrix(w, width))
    x = images.astype(jnp.float32)
    x = jnp.einsum("pw,bhwc->bhpc", wx, x, precision=_HIGHEST)  # TF interpolates along x first
    return jnp.einsum("oh,bhpc->bopc", wy, x, precision=_HIGHEST)


# --- EfficientNet-Lite ----------------------------------------------------------------------------


def efficientnet_center_crop_box(h: int, w: int, size: int = 224) -> tuple[int, int, int]:
    """(top, left, side) of the TF eval crop (`preprocessing._decode_and_center_crop`).

    side = int(size / (size + 32) * min(h, w)), computed in float32 as TF does; the offsets
    round the odd pixel down-right: ((h - side + 1) // 2, (w - side + 1) // 2). An image one
    pixel high or wide, where TF's side would be 0, keeps a side of 1 (its central pixel).
    """
    ratio = np.float32(size / (size + EFFICIENTNET_CROP_PADDING))
    side = max(1, int(ratio * np.float32(min(h, w))))
    return (h - side + 1) // 2, (w - side + 1) // 2, side


def efficientnet_eval_crop(images: jax.Array, size: int = 224, resize: str = "tf") -> jax.Array:
    """uint8 RGB [B, H, W, 3] -> float32 [B, size, size, 3]: the official EfficientNet eval input.

    Centre crop of side size/(size+32) of the shorter side (0.875 at 224), bicubic resize to
    size x size, then (x - 127) / 128 (`MEAN_RGB`, `STDDEV_RGB` of the Lite builder).
    `resize="tf"` is TF1 `resize_bicubic`, what the checkpoints were evaluated with;
    `resize="jax"` is `jax.image.resize(..., "bicubic")` (antialiased, within ~1 grey level
    of PIL's bicubic).
    """
    _, h, w, c = images.shape
    top, left, side = efficientnet_center_crop_box(h, w, size)
    crop = images[:, top : top + side, left : left + side].astype(jnp.float32)
    if resize == "tf":
        x = tf_resize_bicubic(crop, size, size)
    elif resize == "jax":
        x = jax.image.resize(crop, (crop.shape[0], size, size, c), method="bicubic")
    else:
        raise ValueError(f"resize must be 'tf' or 'jax', not {resize!r}")
    return (x - EFFICIENTNET_MEAN_RGB) / EFFICIENTNET_STDDEV_RGB


# --- Caffe CaffeNet / AlexNet ---------------------------------------------------------------------


def caffe_center_crop(images_bgr: jax.Array, mean_227: jax.Array) -> jax.Array:
    """float BGR 0..255 [B, 256, 256, 3] -> float32 [B, 227, 227, 3]: Caffe's TEST-phase input.

    Centre crop at (14, 14) minus `mean_227`, the central 227x227 of the 256x256 mean image
    (`mean[14:241, 14:241]`, HWC BGR).
    """
    x = jnp.asarray(images_bgr, jnp.float32)
    return x[:, 14 : 14 + CAFFE_CROP, 14 : 14 + CAFFE_CROP] - mean_227


def caffe_ten_crops(images_bgr: jax.Array, mean_227: jax.Array) -> jax.Array:
    """float BGR 0..255 [B, 256, 256, 3] -> float32 [B, 10, 227, 227, 3]: the paper's 10 crops.

    Crops at `CAFFE_CROP_OFFSETS` (four corners, centre), then the same five mirrored
    left-right. As in the paper's code, the central 227 region of the mean (`mean_227`, not
    mirrored) is subtracted from every crop, corner crops included.
    """
    x = jnp.asarray(images_bgr, jnp.float32)
    crops = [x[:, r : r + CAFFE_CROP, c : c + CAFFE_CROP] for r, c in CAFFE_CROP_OFFSETS]
    crops += [crop[:, :, ::-1] for crop in crops]
    return jnp.stack(crops, axis=1) - mean_227


# --- torchvision's eval transform -----------------------------------------------------------------


def torchvision_resize_shape(h: int, w: int, short: int = 256) -> tuple[int, int]:
    """torchvision `Resize(short)`: the short side becomes `short`, the long one is truncated."""
    if h <= w:
        return short, int(short * w / h)
    return int(short * h / w), short


def torchvision_eval_input(images: jax.Array) -> jax.Array:
    """uint8 RGB [B, H, W, 3] -> float32 [B, 224, 224, 3]: torchvision `ImageClassification(224)`,
    the eval transform of its AlexNet, ResNet, VGG, MobileNetV2 and ViT-B/16 V1 weights.

    Resize the short side to 256 (bilinear, antialiased, rounded back to uint8 values), centre
    crop 224 (offsets rounded half to even, as torchvision's `round`), scale to [0, 1] and
    normalise with the ImageNet mean and std.
    """
    b, h, w, c = images.shape
    rh, rw = torchvision_resize_shape(h, w)
    x = jax.image.resize(
        images.astype(jnp.float32), (b, rh, rw, c), method="linear", antialias=True
    )
    x = jnp.clip(jnp.round(x), 0, 255)
    top, left = round((rh - 224) / 2), round((rw - 224) / 2)
    x = x[:, top : top + 224, left : left + 224] / 255.0
    return (x - jnp.asarray(TORCHVISION_MEAN)) / jnp.asarray(TORCHVISION_STD)
