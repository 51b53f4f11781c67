"""Caffe's MNIST LeNet, exactly as in `examples/mnist/lenet_train_test.prototxt`.

conv1 20@5x5 -> maxpool 2/2 -> conv2 50@5x5 -> maxpool 2/2 -> ip1 500 -> ReLU -> ip2 10.
There is no ReLU after the convolutions (as in Caffe's example). Layer names follow Caffe's so
that converted `.caffemodel` weights map one to one. The module takes float input NHWC
[B, 28, 28, 1] that is already preprocessed (pixel/256 for the weights shipped here).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class LeNet(nn.Module):
    """LeNet with Caffe's layer names; returns logits [B, num_classes]."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.Conv(20, (5, 5), padding="VALID", name="conv1")(x)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.Conv(50, (5, 5), padding="VALID", name="conv2")(x)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)  # flattened H, W, C (Caffe flattens C, H, W)
        x = nn.relu(nn.Dense(500, name="ip1")(x))
        return nn.Dense(self.num_classes, name="ip2")(x)


def zero_variables(num_classes: int = 10) -> dict:
    """Zero arrays shaped like `LeNet(num_classes)`'s variables: what a weights file must match.

    Built with `jax.eval_shape`, so it costs no computation.
    """
    shapes = jax.eval_shape(
        LeNet(num_classes).init, jax.random.key(0), jnp.zeros((1, 28, 28, 1), jnp.float32)
    )
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
