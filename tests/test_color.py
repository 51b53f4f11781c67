"""OpenCV-style 8-bit HLS/HSV -> RGB (jaxfool.search.encodings.color) against Python's colorsys."""

from __future__ import annotations

import colorsys
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.search.encodings import color

BYTES = np.arange(256)
# Every (L, S) pair (or (S, V) pair) once, as float64 fractions; the hue loop runs over H.
_A, _B = (x.ravel() for x in np.meshgrid(BYTES, BYTES, indexing="ij"))
A64, B64 = _A / 255.0, _B / 255.0
ALL_BYTES = np.stack(
    [np.repeat(BYTES, _A.size), np.tile(_A, 256), np.tile(_B, 256)], axis=-1
).astype(np.uint8)  # all 2**24 byte triples, H major


def _hue_fraction(h_byte: int) -> float:
    """OpenCV hue byte (2-degree units, wrapping above 179) -> colorsys hue in [0, 1)."""
    return ((2 * h_byte) % 360) / 360.0


def _colorsys_v(m1, m2, hue: float):
    """colorsys._v with array m1, m2 and a scalar hue: same operations, same order."""
    hue = hue % 1.0
    if hue < 1.0 / 6.0:
        return m1 + (m2 - m1) * hue * 6.0
    if hue < 0.5:
        return m2
    if hue < 2.0 / 3.0:
        return m1 + (m2 - m1) * (2.0 / 3.0 - hue) * 6.0
    return m1


def _colorsys_hls(h: float, light, s) -> np.ndarray:
    """colorsys.hls_to_rgb for a scalar hue and arrays light, s -> float64 [N, 3]."""
    m2 = np.where(light <= 0.5, light * (1.0 + s), light + s - (light * s))
    m1 = 2.0 * light - m2
    rgb = [
        _colorsys_v(m1, m2, h + 1.0 / 3.0),
        _colorsys_v(m1, m2, h),
        _colorsys_v(m1, m2, h - 1.0 / 3.0),
    ]
    return np.where((s == 0.0)[:, None], light[:, None], np.stack(rgb, axis=-1))


def _colorsys_hsv(h: float, s, v) -> np.ndarray:
    """colorsys.hsv_to_rgb for a scalar hue and arrays s, v -> float64 [N, 3]."""
    i = int(h * 6.0)
    f = (h * 6.0) - i
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return np.where((s == 0.0)[:, None], v[:, None], np.stack(rgb, axis=-1))


@pytest.mark.parametrize(
    "port, ref", [(_colorsys_hls, colorsys.hls_to_rgb), (_colorsys_hsv, colorsys.hsv_to_rgb)]
)
def test_vectorised_port_equals_colorsys(port, ref):
    """The array ports used as references agree bit for bit with colorsys itself."""
    rng = random.Random(0)
    for _ in range(3000):
        h, a, b = rng.randrange(256), rng.randrange(256), rng.randrange(256)
        got = port(_hue_fraction(h), np.array([a / 255.0]), np.array([b / 255.0]))[0]
        assert tuple(got) == ref(_hue_fraction(h), a / 255.0, b / 255.0), (h, a, b)


_ALL_OUTPUTS: dict = {}
HLS = jax.jit(color.hls_bytes_to_rgb)
HSV = jax.jit(color.hsv_bytes_to_rgb, static_argnames="truncate")


def _all_outputs(fn) -> np.ndarray:
    """fn on all 2**24 byte triples, int16 [H 256, L|S 65536, 3]; computed once per fn."""
    if fn not in _ALL_OUTPUTS:
        _ALL_OUTPUTS[fn] = np.asarray(jax.jit(fn)(ALL_BYTES)).reshape(256, -1, 3).astype(np.int16)
    return _ALL_OUTPUTS[fn]


@pytest.mark.parametrize(
    "fn, port", [(color.hls_bytes_to_rgb, _colorsys_hls), (color.hsv_bytes_to_rgb, _colorsys_hsv)]
)
def test_all_byte_triples_match_colorsys(fn, port):
    """All 2**24 inputs; float32 vs float64 may differ by one level next to a .5 boundary only."""
    ours = _all_outputs(fn)
    off_by_one = 0
    for h in range(256):
        exact = port(_hue_fraction(h), A64, B64) * 255.0
        diff = np.abs(ours[h] - np.rint(exact))  # cvRound: half to even
        assert diff.max() <= 1, h
        # Only where float32 error (mostly H * 6/180, ~1e-4 levels) can cross a .5 boundary.
        assert (np.abs(exact[diff > 0] % 1.0 - 0.5) < 2e-4).all(), h
        off_by_one += int(np.count_nonzero(diff.max(axis=-1)))
    assert off_by_one < 1e-3 * ALL_BYTES.shape[0], off_by_one


@pytest.mark.parametrize(
    "hls, rgb",
    [
        # L byte 128 is l = 128/255 > 1/2, so p1 = 2l - 1 = 1/255: OpenCV's "pure" colours
        # (RGB2HLS maps (255, 0, 0) to (0, 128, 255)) come back with a 1 in the other channels.
        ((0, 128, 255), (255, 1, 1)),  # red: 0 degrees
        ((60, 128, 255), (1, 255, 1)),  # green: 120 degrees
        ((120, 128, 255), (1, 1, 255)),  # blue: 240 degrees
        ((30, 128, 255), (255, 255, 1)),  # yellow: 60 degrees
        ((90, 128, 255), (1, 255, 255)),  # cyan: 180 degrees
        ((150, 128, 255), (255, 1, 255)),  # magenta: 300 degrees
        ((15, 128, 255), (255, 128, 1)),  # 30 degrees: halfway red -> yellow
        ((0, 127, 255), (254, 0, 0)),  # l < 1/2: p2 = l (1 + s) = 254/255, p1 = 0
        ((0, 64, 255), (128, 0, 0)),  # dark red: p2 = 2 l = 128/255
        ((77, 255, 200), (255, 255, 255)),  # white whatever H, S
        ((77, 0, 200), (0, 0, 0)),  # black
        ((77, 128, 0), (128, 128, 128)),  # gray: S = 0
        ((180, 128, 255), (255, 1, 1)),  # H 180 wraps to H 0
        ((200, 100, 200), (178, 126, 22)),  # H 200 == H 20 (40 degrees)
        ((20, 100, 200), (178, 126, 22)),
    ],
)
def test_hls_hand_checked(hls, rgb):
    assert tuple(np.asarray(HLS(np.array(hls, np.uint8)))) == rgb


@pytest.mark.parametrize(
    "hsv, rgb",
    [
        ((0, 255, 255), (255, 0, 0)),
        ((60, 255, 255), (0, 255, 0)),
        ((120, 255, 255), (0, 0, 255)),
        ((77, 200, 0), (0, 0, 0)),
        ((77, 0, 255), (255, 255, 255)),
        ((77, 0, 128), (128, 128, 128)),
        ((0, 255, 128), (128, 0, 0)),
    ],
)
def test_hsv_hand_checked(hsv, rgb):
    assert tuple(np.asarray(HSV(np.array(hsv, np.uint8)))) == rgb


@pytest.mark.parametrize("fn", [color.hls_bytes_to_rgb, color.hsv_bytes_to_rgb])
def test_hue_bytes_wrap_at_180(fn):
    """H bytes 180..255 are hues 0..150 again (OpenCV wraps, it does not clip).

    H * (6/180) is rounded to float32 before the wrap, so OpenCV itself (which this matches)
    can land one level apart for H and H + 180 next to a .5 boundary: rare, never more than 1.
    """
    out = _all_outputs(fn)
    diff = np.abs(out[180:] - out[:76])  # every H byte 180..255 against H - 180, all L, S
    assert diff.max() <= 1
    assert np.count_nonzero(diff.max(axis=-1)) < 1e-3 * diff[..., 0].size
    ls = [128 * 256 + 255, 100 * 256 + 200, 200 * 256 + 50]  # (L, S) = (128, 255), ...
    np.testing.assert_array_equal(out[[180, 200, 255]][:, ls], out[[0, 20, 75]][:, ls])


def test_hsv_truncate_flag():
    """truncate=True floors instead of rounding (OpenCV's SIMD bulk path); never above round."""
    x = ALL_BYTES[::97]
    rounded = np.asarray(HSV(x)).astype(int)
    truncated = np.asarray(HSV(x, truncate=True)).astype(int)
    assert ((rounded - truncated >= 0) & (rounded - truncated <= 1)).all()
    assert (rounded != truncated).any()


def test_float_versions_match_colorsys():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(2000, 3))
    deg = x[:, 0] * 1000.0 - 300.0  # hues outside [0, 360) wrap
    hls = np.asarray(color.hls_to_rgb(np.stack([deg, x[:, 1], x[:, 2]], -1)))
    hsv = np.asarray(color.hsv_to_rgb(np.stack([deg, x[:, 1], x[:, 2]], -1)))
    hue = (deg / 360.0) % 1.0
    rows = list(zip(hue, x[:, 1], x[:, 2], strict=True))
    ref_hls = [colorsys.hls_to_rgb(*row) for row in rows]
    ref_hsv = [colorsys.hsv_to_rgb(*row) for row in rows]
    np.testing.assert_allclose(hls, np.array(ref_hls), atol=1e-5)
    np.testing.assert_allclose(hsv, np.array(ref_hsv), atol=1e-5)


@pytest.mark.parametrize("fn", [color.hls_bytes_to_rgb, color.hsv_bytes_to_rgb])
def test_shapes_jit_vmap(fn):
    """[B, S, S, 3] uint8 in, same shape uint8 out; jit and vmap give the same bytes."""
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    out = jax.jit(fn)(batch)
    assert out.shape == batch.shape and out.dtype == jnp.uint8
    np.testing.assert_array_equal(jax.jit(jax.vmap(fn))(batch), out)
    expected = _all_outputs(fn).reshape(-1, 3)[batch.astype(np.int64) @ [65536, 256, 1]]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(fn(batch[0, 3, 5]), out[0, 3, 5])  # a single pixel [3]
    with pytest.raises(ValueError):
        fn(batch[..., :2])
