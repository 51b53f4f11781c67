"""`jaxfool.classifiers.nets.conv.strided_valid_conv` equals `lax.conv_general_dilated`."""

import jax
import numpy as np
import pytest
from jax import lax

from jaxfool.classifiers.nets.conv import strided_valid_conv


@pytest.mark.parametrize(
    "hw,k,stride,padding",
    [
        ((227, 227), 11, 4, "VALID"),  # CaffeNet conv1: the padded row fits
        ((224, 224), 11, 4, "VALID"),  # (224 - 11) % 4 == 1: fits
        ((226, 229), 11, 4, "VALID"),  # H has no room (% 4 == 3), W has
        ((14, 14), 3, 4, "VALID"),  # neither has room: unchanged
        ((30, 31), 5, 2, "VALID"),
        ((17, 17), 3, 3, "SAME"),
        ((224, 224), 11, 4, ((2, 2), (2, 2))),  # already padded: unchanged
        ((12, 12), 3, 1, "VALID"),  # stride 1: unchanged
    ],
)
def test_strided_valid_conv_matches_xla(hw, k, stride, padding):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
    w = jax.random.normal(jax.random.key(1), (k, k, 3, 5))
    kw = dict(dimension_numbers=("NHWC", "HWIO", "NHWC"))
    want = lax.conv_general_dilated(x, w, (stride, stride), padding, **kw)
    got = strided_valid_conv(x, w, (stride, stride), padding, **kw)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_strided_valid_conv_pads_only_when_nothing_changes():
    """The extra row shows in the lowered convolution only where it is unread."""

    def pads(hw, stride, k=11, padding="VALID"):
        x, w = (
            jax.ShapeDtypeStruct((1, *hw, 3), "float32"),
            jax.ShapeDtypeStruct((k, k, 3, 4), "float32"),
        )
        conv = lambda x, w: strided_valid_conv(  # noqa: E731
            x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        text = jax.jit(conv).lower(x, w).as_text()
        return text.split("pad = ")[1].split("]]")[0] + "]]"

    assert pads((227, 227), 4) == "[[0, 1], [0, 0]]"
    assert pads((226, 229), 4) == "[[0, 0], [0, 1]]"
    assert pads((226, 226), 4) == "[[0, 0], [0, 0]]"
    assert pads((12, 12), 1, k=3) == "[[0, 0], [0, 0]]"


def test_strided_valid_conv_nchw_and_dilation():
    """Other layouts find the spatial axes; dilated convolutions pass through unchanged."""
    x = jax.random.normal(jax.random.key(0), (2, 3, 23, 23))
    w = jax.random.normal(jax.random.key(1), (4, 3, 3, 3))
    for kw in (dict(), dict(rhs_dilation=(2, 2)), dict(lhs_dilation=(2, 2))):
        want = lax.conv_general_dilated(x, w, (4, 4), ((0, 0), (0, 0)), **kw)
        got = strided_valid_conv(x, w, (4, 4), ((0, 0), (0, 0)), **kw)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
