"""A stride-1 VALID convolution and a 2 x 2 max-pool whose forward passes are XLA's own (the same
values bit for bit) and whose input gradients are written out as a matmul and shifted adds.

Why: on the CPU, XLA's input gradients of LeNet's layers cost several forward passes each
(measured on the 2-core CPU, 100 MNIST images: conv1 forward 1.4 ms, its input gradient 11 ms;
conv2 5.3 / 9.6 ms; pool1 0.3 / 6.2 ms), and the gradient emitters need exactly these
gradients, d log p / d image, for every child.

- Convolution: y[i, j] = sum over taps (a, b) of x[i + a, j + b] @ w[a, b], so
  dx[i + a, j + b] += dy[i, j] @ w[a, b]^T: one matmul of dy with every tap's weights at
  once, then kh * kw shifted adds (a col2im). The kernel's gradient is autodiff's own (the
  same convolution XLA transposes to), so training through this layer is unchanged.
- Max-pool 2 x 2, stride 2: the cotangent goes to the first maximum of each window in
  row-major order, as XLA's select-and-scatter gives it (ties are common: a blank background
  makes equal activations), so the gradient is autodiff's bit for bit.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(
    lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
    dimension_numbers=None, feature_group_count=1, precision=None, **kwargs,
):  # fmt: skip
    """`lax.conv_general_dilated` (what `nn.Conv(conv_general_dilated=...)` calls) with the
    written-out input gradient where the convolution is stride 1, VALID, undilated, NHWC."""
    conv = partial(
        lax.conv_general_dilated,
        window_strides=window_strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
        **kwargs,
    )
    dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    simple = (
        all(s == 1 for s in window_strides)
        and (padding == "VALID" or all(tuple(p) == (0, 0) for p in padding))
        and all(d == 1 for d in (lhs_dilation or (1,)) + (rhs_dilation or (1,)))
        and feature_group_count == 1
        and not kwargs
        and dims == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
    )
    return _conv(conv, lhs, rhs) if simple else conv(lhs, rhs)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv(conv, x, w):
    return conv(x, w)


def _conv_fwd(conv, x, w):
    return conv(x, w), (x, w)


def _conv_bwd(conv, res, dy):
    x, w = res
    kh, kw, cin, cout = w.shape
    b, ho, wo, _ = dy.shape
    taps = dy.reshape(-1, cout) @ w.reshape(kh * kw * cin, cout).T  # [B*Ho*Wo, kh*kw*cin]
    taps = taps.reshape(b, ho, wo, kh, kw, cin)
    # each tap's plane padded to x's size and summed: XLA fuses it into one loop (6x faster
    # than in-place adds of slices at conv1's size)
    dx = sum(
        jnp.pad(taps[:, :, :, a, c, :], ((0, 0), (a, kh - 1 - a), (c, kw - 1 - c), (0, 0)))
        for a in range(kh)
        for c in range(kw)
    )
    (dw,) = jax.vjp(lambda k: conv(x, k), w)[1](dy)  # autodiff's kernel gradient
    return dx.astype(x.dtype), dw


_conv.defvjp(_conv_fwd, _conv_bwd)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """`nn.max_pool(x, (2, 2), strides=(2, 2))` on NHWC with even H and W."""
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def _pool_fwd(x):
    return max_pool_2x2(x), x


def _pool_bwd(x, dy):
    b, h, w, c = x.shape
    win = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    win = win.reshape(b, h // 2, w // 2, 4, c)  # each window's 4 values, row-major
    top = win == jnp.max(win, axis=3, keepdims=True)
    first = top & (jnp.cumsum(top, axis=3) == 1)
    dx = jnp.where(first, dy[:, :, :, None, :], jnp.zeros((), dy.dtype))
    dx = dx.reshape(b, h // 2, w // 2, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return (dx.reshape(b, h, w, c),)


max_pool_2x2.defvjp(_pool_fwd, _pool_bwd)
