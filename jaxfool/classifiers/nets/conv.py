"""Convolutions that XLA runs slowly on CPUs, rewritten from fast primitives.

All are drop-in `conv_general_dilated` functions for `nn.Conv` (channels-last input, HWIO
kernel), so parameters keep `nn.Conv`'s names and shapes and the results are the same. Each
rewrite is the CPU form; `backend` (`jaxfool.base.platforms`; auto: the platform the network is
lowered for) picks it or the plain `lax.conv_general_dilated` (accelerators: cuDNN and TPU
convolutions run grouped and depthwise convolutions natively).
"""

from __future__ import annotations

from functools import partial

import jax.numpy as jnp
from jax import lax

from jaxfool.base import platforms


def grouped_conv(
    lhs, rhs, window_strides, padding, *, feature_group_count=1, backend="auto", **kwargs
):
    """CPU form: one convolution per channel group, concatenated (Caffe's contiguous groups).

    The same result as `feature_group_count=g`, but faster than XLA's grouped convolution on
    CPU (CaffeNet's conv2 3x, the whole network 2x).
    """

    def per_group(lhs, rhs):
        groups = zip(
            jnp.split(lhs, feature_group_count, axis=-1),
            jnp.split(rhs, feature_group_count, axis=-1),
            strict=True,
        )
        outs = [
            lax.conv_general_dilated(x, k, window_strides, padding, **kwargs) for x, k in groups
        ]
        return jnp.concatenate(outs, axis=-1)

    def grouped(lhs, rhs):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, feature_group_count=feature_group_count, **kwargs
        )

    if feature_group_count == 1:
        return grouped(lhs, rhs)
    return platforms.select(backend, per_group, grouped, lhs, rhs)


def depthwise_conv(
    lhs, rhs, window_strides, padding, *, feature_group_count=1, backend="auto", **kwargs
):
    """CPU form: a depthwise convolution (one filter per channel) as k*k shifted multiply-adds.

    XLA's CPU backend runs `feature_group_count == channels` convolutions ~4x slower than this
    sum of strided slices (EfficientNet-Lite0 at batch 64: 6.8 s vs 1.8 s on 2 cores). Anything
    that is not depthwise, or uses dilation, goes to `lax.conv_general_dilated` unchanged.
    """

    def grouped(lhs, rhs):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, feature_group_count=feature_group_count, **kwargs
        )

    channels = lhs.shape[-1]
    plain = not any(kwargs.get(k) not in (None, (1, 1)) for k in ("lhs_dilation", "rhs_dilation"))
    if feature_group_count != channels or rhs.shape[2] != 1 or not plain:
        return grouped(lhs, rhs)
    shifted = partial(_shifted_depthwise, window_strides=window_strides, padding=padding)
    return platforms.select(backend, shifted, grouped, lhs, rhs)


def _shifted_depthwise(lhs, rhs, window_strides, padding):
    """The sum over the k*k kernel taps of strided slices times the tap's weights (NHWC,
    HWIO). Sums in float32 at least (a bfloat16 input is rounded once, at the end)."""
    channels = lhs.shape[-1]
    acc = jnp.promote_types(lhs.dtype, jnp.float32)
    kh, kw = rhs.shape[:2]
    sh, sw = window_strides
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
    x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            limit = (x.shape[0], i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, channels)
            tap = lax.slice(x, (0, i, j, 0), limit, (1, sh, sw, 1))
            term = tap.astype(acc) * rhs[i, j, 0].astype(acc)
            out = term if out is None else out + term
    return out.astype(lhs.dtype)


def strided_valid_conv(lhs, rhs, window_strides, padding, *, backend="auto", **kwargs):
    """CPU form: a strided convolution without padding, given one row of high padding that no
    window reads (the accelerator form: the convolution as asked).

    XLA's CPU backend (YNNPACK convolutions, jax 0.10.2) runs strided convolutions that have no
    padding at all ~1.9x slower than padded ones: CaffeNet's conv1 (11x11 stride 4, VALID, on
    227x227, batch 64) costs 345 ms of one core vs 185 ms with the row, CaffeNet as a whole 1.14x.
    Where one more row still completes no window (`(n - k) % stride < stride - 1`), the zero
    row changes neither the output size nor any output. Anything else (padded, stride 1,
    dilated, no room for the row) goes to `lax.conv_general_dilated` unchanged.
    """
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, kwargs.get("dimension_numbers"))
    sizes = [lhs.shape[d] for d in dn.lhs_spec[2:]]
    kernel = [rhs.shape[d] for d in dn.rhs_spec[2:]]
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(sizes, kernel, window_strides, padding)
    padding = [tuple(p) for p in padding]
    ones = (1,) * len(sizes)
    plain = not any(kwargs.get(k) not in (None, ones) for k in ("lhs_dilation", "rhs_dilation"))
    extra = list(padding)
    if plain and all(p == (0, 0) for p in padding):
        for i, (n, k, s) in enumerate(zip(sizes, kernel, window_strides, strict=True)):
            if (n - k) % s < s - 1:  # the row past the edge starts no new window
                extra[i] = (0, 1)
                break
    if extra == padding:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
    padded, unpadded = (
        partial(lax.conv_general_dilated, window_strides=window_strides, padding=p, **kwargs)
        for p in (extra, padding)
    )
    return platforms.select(backend, padded, unpadded, lhs, rhs)
