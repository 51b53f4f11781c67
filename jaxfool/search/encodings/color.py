"""OpenCV-compatible 8-bit HLS/HSV -> RGB conversion, vectorised in jnp.

The original code writes the three CPPN outputs as the H, L, S bytes of an OpenCV 8-bit HLS
image and calls ``cvtColor(..., CV_HLS2BGR)`` (docs/faithfulness.md, "Colour conversion"). We
keep images RGB, so ``hls_bytes_to_rgb`` reproduces ``cv2.cvtColor(img, cv2.COLOR_HLS2RGB)`` on
uint8 input.

Byte conventions (OpenCV 8-bit, ``hrange = 180``):

* H is in units of 2 degrees, nominally 0..179. Bytes 180..255 are not clipped: OpenCV scales
  H by ``hscale = 6/180`` into hue sectors and wraps the result into [0, 6), so H and H - 180
  give the same colour (hue in degrees = ``(2 * H) mod 360``), up to one level in rare
  float32 near-ties, exactly as in OpenCV. One wrap suffices: 255 * 6/180 = 8.5 < 12.
* L, S (and V) are divided by 255.
* The result is multiplied by 255, rounded half to even (``cvRound``) and saturated to 0..255.

The arithmetic follows OpenCV's kernels (``color_hsv.simd.hpp``) step by step in float32, so
the bytes match OpenCV exactly when the backend evaluates float32 the same way (checked with
OpenCV 5.0 on CPU for all 2**24 byte triples; for HSV see ``hsv_bytes_to_rgb`` on rounding).
Everything is elementwise over any leading shape and safe under ``jit`` and ``vmap``: the six
hue sectors are chosen with ``jnp.where``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_F32 = jnp.float32
_HSCALE_BYTES = np.float32(6.0) / np.float32(180.0)  # OpenCV: 6.f / hrange, hrange = 180
_INV255 = np.float32(1.0) / np.float32(255.0)  # OpenCV: 1.f / 255.f


def _sector_split(hraw: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Hue in sector units (>= 0) -> (sector 0..5, fraction in [0, 1)), as OpenCV wraps it."""
    pre = jnp.trunc(hraw)
    frac = hraw - pre
    sector = pre - _F32(6.0) * jnp.trunc(hraw * _F32(1.0 / 6.0))
    return sector, frac


def _pick(sector, tab0, tab1, tab2, tab3) -> jnp.ndarray:
    """Applies OpenCV's ``sector_data`` table {{1,3,0},{1,0,2},{3,0,1},{0,2,1},{0,1,3},{2,1,0}}.

    The table lists (b, g, r) indices into ``tab`` for sectors 0..5; returns RGB on the last axis.
    """
    b = jnp.where(
        sector < 2, tab1, jnp.where(sector == 2, tab3, jnp.where(sector <= 4, tab0, tab2))
    )
    g = jnp.where(sector < 1, tab3, jnp.where(sector <= 2, tab0, jnp.where(sector < 4, tab2, tab1)))
    r = jnp.where(
        sector < 1,
        tab0,
        jnp.where(
            sector < 2, tab2, jnp.where(sector < 4, tab1, jnp.where(sector == 4, tab3, tab0))
        ),
    )
    return jnp.stack([r, g, b], axis=-1)


def _hls_sectors_to_rgb(hraw, light, s) -> jnp.ndarray:
    """Hue in sectors (>= 0), l, s in [0, 1] -> float RGB in [0, 1] (OpenCV ``HLS2RGB_f``)."""
    hraw, light, s = (jnp.asarray(x, _F32) for x in (hraw, light, s))
    ls = light * s
    elem0 = jnp.where(light <= _F32(0.5), ls, s - ls)  # (p2 - p1) / 2
    sector, frac = _sector_split(hraw)
    elem1 = frac + frac
    tab0 = light + elem0  # p2
    tab1 = light - elem0  # p1
    tab2 = (light + elem0) - elem0 * elem1  # p1 + (p2 - p1) * (1 - h)
    tab3 = (light - elem0) + elem0 * elem1  # p1 + (p2 - p1) * h
    return _pick(sector, tab0, tab1, tab2, tab3)


def _hsv_sectors_to_rgb(hraw, s, v) -> jnp.ndarray:
    """Hue in sectors (>= 0), s, v in [0, 1] -> float RGB in [0, 1] (OpenCV ``HSV2RGB_f``)."""
    hraw, s, v = (jnp.asarray(x, _F32) for x in (hraw, s, v))
    sector, frac = _sector_split(hraw)
    one = _F32(1.0)
    tab0 = v
    tab1 = v * (one - s)
    tab2 = v * (one - s * frac)
    tab3 = v * (one - s * (one - frac))
    return _pick(sector, tab0, tab1, tab2, tab3)


def _to_bytes(rgb: jnp.ndarray, truncate: bool = False) -> jnp.ndarray:
    """Float [0, 1] -> uint8 like ``saturate_cast<uchar>(x * 255)``: round half to even, clip."""
    x = rgb * _F32(255.0)
    return jnp.clip(jnp.trunc(x) if truncate else jnp.round(x), 0, 255).astype(jnp.uint8)


def _split_bytes(img) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """uint8 [..., 3] -> (hue in sectors, second channel / 255, third channel / 255), float32."""
    img = jnp.asarray(img)
    if img.shape[-1] != 3:
        raise ValueError(f"expected [..., 3], got shape {img.shape}")
    x = img.astype(_F32)
    return x[..., 0] * _HSCALE_BYTES, x[..., 1] * _INV255, x[..., 2] * _INV255


def hls_bytes_to_rgb(hls) -> jnp.ndarray:
    """OpenCV 8-bit HLS (H in 2-degree units, wrapping above 179) -> uint8 RGB.

    Equals ``cv2.cvtColor(hls, cv2.COLOR_HLS2RGB)`` for uint8 ``[..., 3]`` input; this is the
    colour mapping of the original CPPN images (which used HLS2BGR and fed BGR to Caffe).
    """
    h, light, s = _split_bytes(hls)
    return _to_bytes(_hls_sectors_to_rgb(h, light, s))


def hsv_bytes_to_rgb(hsv, *, truncate: bool = False) -> jnp.ndarray:
    """OpenCV 8-bit HSV (H in 2-degree units, wrapping above 179) -> uint8 RGB.

    For readers who take the paper's "HSV" literally; the original code used HLS
    (``hls_bytes_to_rgb``). The default rounds like OpenCV's scalar code (``saturate_cast``, as
    in OpenCV 2.4). The SIMD loop of recent OpenCV (checked: 5.0), which converts all but the
    tail of each row, truncates instead; ``truncate=True`` (static) reproduces that bulk path.
    """
    h, s, v = _split_bytes(hsv)
    return _to_bytes(_hsv_sectors_to_rgb(h, s, v), truncate)


def hls_to_rgb(hls) -> jnp.ndarray:
    """Float HLS [..., 3] (hue in degrees, any real value, wrapped mod 360; l, s in [0, 1]) ->
    float32 RGB in [0, 1]."""
    hls = jnp.asarray(hls, _F32)
    h = jnp.mod(hls[..., 0] * _F32(1.0 / 60.0), _F32(6.0))
    return _hls_sectors_to_rgb(h, hls[..., 1], hls[..., 2])


def hsv_to_rgb(hsv) -> jnp.ndarray:
    """Float HSV [..., 3] (hue in degrees, any real value, wrapped mod 360; s, v in [0, 1]) ->
    float32 RGB in [0, 1]."""
    hsv = jnp.asarray(hsv, _F32)
    h = jnp.mod(hsv[..., 0] * _F32(1.0 / 60.0), _F32(6.0))
    return _hsv_sectors_to_rgb(h, hsv[..., 1], hsv[..., 2])
