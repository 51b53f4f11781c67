"""A small convnet for the synthetic stand-in of ImageNet (tests, smoke runs of retraining).

conv1 8@3x3/2 -> relu -> conv2 16@3x3/2 -> relu -> global mean pool -> fc num_classes.
Input: float NHWC [B, S, S, 3], already preprocessed (x / 255 - 0.5 for the retraining nets).
"""

import flax.linen as nn
import jax.numpy as jnp


class TinyNet(nn.Module):
    """A small convnet for the synthetic stand-in of ImageNet (tests, smoke runs)."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), name="conv1")(x))
        x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2), name="conv2")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)
