"""An example of your own model (docs/models.md, "Your own model"): `--model=tests.my_mlp:factory`.

A factory takes the `--weights` path (None when the flag is not given) and returns a
`Classifier` (name, logits of uint8 images, image shape, labels) and the params its logits take.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfool.base import npz
from jaxfool.classifiers import Classifier


class MLP(nn.Module):
    """28 x 28 gray -> 64 ReLU -> 10 digits."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def logits(params, images):
    """uint8 [B, 28, 28, 1] -> float32 [B, 10]: the network's own preprocessing, then the net."""
    return MLP().apply(params, images.astype(jnp.float32) / 255.0)


def factory(weights):
    if weights is None:  # no --weights: a fixed random initialisation
        params = MLP().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    else:  # an .npz written by jaxfool.base.npz.save_params
        params, _ = npz.load_params(weights)
    labels = tuple(str(d) for d in range(10))
    return Classifier("my_mlp", logits, (28, 28, 1), labels), params
