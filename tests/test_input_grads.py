"""LeNet's written input gradients (`classifiers.nets.input_grads`): the same forward values bit
for bit, the pooling gradient autodiff's bit for bit (ties included), the image gradient
autodiff's to float rounding, and the kernel gradient autodiff's own."""

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.classifiers import scoring
from jaxfool.classifiers.data import mnist
from jaxfool.classifiers.nets import input_grads
from jaxfool.classifiers.nets.lenet import LeNet

MNIST = Path(mnist.__file__).parent / "mnist-10k"


@pytest.fixture(scope="module")
def digits():
    """64 real test digits (blank backgrounds: many equal activations) and 64 noise images."""
    images, _ = mnist.load_mnist(MNIST, "test")
    noise = jax.random.randint(jax.random.key(0), (64, 28, 28, 1), 0, 256)
    return jnp.concatenate(
        [jnp.asarray(images[:64]).reshape(64, 28, 28, 1), noise.astype(jnp.uint8)]
    )


def conv(x, w, fn=jax.lax.conv_general_dilated, strides=(1, 1), padding="VALID"):
    return fn(x, w, strides, padding, dimension_numbers=input_grads.NHWC)


def test_logits_are_the_same_and_the_image_gradient_is_autodiffs(lenet, digits):
    clf, params = lenet
    written = clf.logits.for_input_grads()
    x = digits.astype(jnp.float32)
    np.testing.assert_array_equal(clf.logits(params, x), written(params, x))

    def grad(logits):
        targets = jnp.arange(x.shape[0]) % 10
        lp = lambda x: scoring.log_probs(logits, params, x)[jnp.arange(x.shape[0]), targets]  # noqa: E731
        return np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(lp(x))))(x))

    ours, theirs = grad(written), grad(clf.logits)
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6 * np.abs(theirs).max())


def test_pool_gradient_is_autodiffs_bit_for_bit_with_ties(lenet, digits):
    _, params = lenet
    x = digits.astype(jnp.float32) / 256.0  # LeNet's input (the shipped mean is 0)
    k = params["net"]["params"]["conv1"]
    act = conv(x, k["kernel"]) + k["bias"]  # conv1 of blank backgrounds: equal values
    windows = np.asarray(act).reshape(128, 12, 2, 12, 2, 20)
    tied = (windows == windows.max(axis=(2, 4), keepdims=True)).sum(axis=(2, 4)) > 1
    assert tied.mean() > 0.1, tied.mean()
    cot = jax.random.normal(jax.random.key(1), (128, 12, 12, 20))

    def vjp(pool):
        return np.asarray(jax.vjp(pool, act)[1](cot)[0])

    xla = vjp(lambda a: nn.max_pool(a, (2, 2), strides=(2, 2)))
    np.testing.assert_array_equal(vjp(input_grads.max_pool_2x2), xla)
    np.testing.assert_array_equal(input_grads.max_pool_2x2(act), nn.max_pool(act, (2, 2), (2, 2)))


@pytest.mark.parametrize(
    "shapes", [((8, 28, 28, 1), (5, 5, 1, 20)), ((8, 12, 12, 20), (5, 5, 20, 50))]
)
def test_conv_gradients_against_autodiff(shapes):
    """Input gradient: autodiff's to rounding; kernel gradient: autodiff's bit for bit; a
    strided convolution (not written out) is autodiff's entirely."""
    kx, kw, ky = jax.random.split(jax.random.key(2), 3)
    x, w = jax.random.normal(kx, shapes[0]), jax.random.normal(kw, shapes[1])
    for strides in [(1, 1), (2, 2)]:
        xla = lambda x, w, s=strides: conv(x, w, strides=s)  # noqa: E731
        ours = lambda x, w, s=strides: conv(x, w, input_grads.conv_general_dilated, s)  # noqa: E731
        y, back = jax.vjp(ours, x, w)
        y0, back0 = jax.vjp(xla, x, w)
        np.testing.assert_array_equal(y, y0)
        cot = jax.random.normal(ky, y.shape)
        (dx, dw), (dx0, dw0) = back(cot), back0(cot)
        np.testing.assert_allclose(dx, dx0, rtol=0, atol=1e-5 * float(jnp.abs(dx0).max()))
        np.testing.assert_array_equal(dw, dw0)
        if strides == (2, 2):
            np.testing.assert_array_equal(dx, dx0)


def test_the_written_lenet_has_lenets_parameters():
    x = jnp.zeros((1, 28, 28, 1))
    shapes = jax.tree.map(jnp.shape, LeNet().init(jax.random.key(0), x))
    assert (
        jax.tree.map(jnp.shape, LeNet(written_input_grads=True).init(jax.random.key(0), x))
        == shapes
    )
