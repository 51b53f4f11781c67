"""torchvision's ViT-B/16 (Dosovitskiy et al. 2021) in Flax, inference only.

16 x 16 patch embedding (`conv_proj`), a class token, learned position embeddings, 12 pre-norm
encoder blocks (LayerNorm eps 1e-6, 12-head self-attention, exact-GELU MLP), a final LayerNorm
and `heads.head` on the class token. Names are torchvision's state-dict paths
(`encoder.layers.encoder_layer_0.self_attention.in_proj_weight`, kept in torch's (3E, E)
layout), so `jaxfool.classifiers.weights.torch_layout` converts `vit_b_16-*.pth` files by rule.
Input: float32 NHWC RGB [B, 224, 224, 3] from `preprocess.torchvision_eval_input` (the V1
weights' recipe: resize 256, crop 224). Output: logits [B, num_classes].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfool.classifiers.nets.torchvision import torch_layout_spec

LN_EPSILON = 1e-6


def layer_norm(name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPSILON, use_fast_variance=False, name=name)


class SelfAttention(nn.Module):
    """torch's nn.MultiheadAttention(batch_first=True) on one sequence: q = k = v = x."""

    heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, e = x.shape
        w = self.param("in_proj_weight", nn.initializers.xavier_uniform(), (3 * e, e))
        bias = self.param("in_proj_bias", nn.initializers.zeros, (3 * e,))
        q, k, v = jnp.split(x @ w.T + bias, 3, axis=-1)
        d = e // self.heads
        q, k, v = (t.reshape(b, n, self.heads, d) for t in (q, k, v))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(d)).astype(x.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
        return nn.Dense(e, name="out_proj")(out.reshape(b, n, e))


class ViT(nn.Module):
    patch: int = 16
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp: int = 3072
    num_classes: int = 1000
    image_size: int = 224

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b = x.shape[0]
        p = self.patch
        x = nn.Conv(self.width, (p, p), strides=p, padding="VALID", name="conv_proj")(x)
        x = x.reshape(b, -1, self.width)  # patches in row-major order, as torch's flatten(2)
        token = self.param("class_token", nn.initializers.zeros, (1, 1, self.width))
        x = jnp.concatenate([jnp.broadcast_to(token, (b, 1, self.width)).astype(x.dtype), x], 1)
        n = (self.image_size // p) ** 2 + 1
        pos = self.param("encoder.pos_embedding", nn.initializers.normal(0.02), (1, n, self.width))
        x = x + pos.astype(x.dtype)
        for i in range(self.depth):
            name = f"encoder.layers.encoder_layer_{i}"
            y = SelfAttention(self.heads, name=f"{name}.self_attention")(
                layer_norm(f"{name}.ln_1")(x)
            )
            x = x + y
            y = layer_norm(f"{name}.ln_2")(x)
            y = nn.Dense(self.mlp, name=f"{name}.mlp.0")(y)
            y = nn.Dense(self.width, name=f"{name}.mlp.3")(jax.nn.gelu(y, approximate=False))
            x = x + y
        x = layer_norm("encoder.ln")(x)
        return nn.Dense(self.num_classes, name="heads.head")(x[:, 0])


REGISTRY = (
    torch_layout_spec(
        "vit_b_16",
        lambda n=1000: ViT(num_classes=n),
        "heads.head.bias",
        "torchvision ViT-B/16 (pass --weights=vit_b_16-*.pth or .safetensors)",
    ),
)
