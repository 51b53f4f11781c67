"""One converter from a torch state dict to Flax variables, for modules named like the torch ones,
and the layout rules every converter uses (Caffe's blobs share torch's OIHW / (out, in) layout).

A Flax module whose submodules carry the torch module paths as names (`nn.Conv(...,
name="layer1.0.conv1")`) has variables whose flat keys map to the state dict's by rule:

- `params/layer1.0.conv1/kernel` -> `layer1.0.conv1.weight` (Conv / Dense kernels), `.../bias`
  -> `.bias`, `.../scale` -> `.weight` (BatchNorm, LayerNorm); `batch_stats/.../mean` ->
  `.running_mean`, `.../var` -> `.running_var`; any other leaf keeps its name
  (`params/encoder/pos_embedding` -> `encoder.pos_embedding`).
- Layout: a 4-D kernel OIHW -> HWIO (`transpose(2, 3, 1, 0)`), a 2-D kernel (out, in) ->
  (in, out); everything else as stored (a module keeps torch's layout for its own params, e.g.
  ViT's `in_proj_weight`). Flatten orders are the module's business (transpose the activations
  to C, H, W before flattening, as torch flattens).

Every key of the state dict must be used (BatchNorm's `num_batches_tracked` is ignored) and
every variable filled, with the right shape; otherwise `WeightsFileError` names the file, the
key and both shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.base.npz import WeightsFileError, check_matches, flatten, unflatten

LEAF_NAMES = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}
IGNORED = (".num_batches_tracked",)


def reference_params(module: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Zero arrays (broadcast views, no memory) with the shapes of `module`'s variables, from
    `jax.eval_shape` (nothing is computed): what a converted file must match."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros(input_shape, jnp.float32))
    return jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), shapes)


def torch_key(flat_key: str) -> str:
    """'params/layer1.0.conv1/kernel' -> 'layer1.0.conv1.weight' (see the module docstring)."""
    _, *path, leaf = flat_key.split("/")
    return ".".join([*path, LEAF_NAMES.get(leaf, leaf)])


def torch_shape(flat_key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape torch stores for a Flax variable of `shape`."""
    if flat_key.endswith("/kernel") and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if flat_key.endswith("/kernel") and len(shape) == 2:
        return shape[::-1]
    return tuple(shape)


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """OIHW (grouped: O x I/g x kh x kw) -> Flax HWIO. Caffe, torch and Flax all compute
    cross-correlation and split groups into contiguous channel blocks: no flip, no reorder.
    A blob that is not 4-D is passed on for the caller's shape check to report."""
    return w.transpose(2, 3, 1, 0) if w.ndim == 4 else w


def dense_kernel(w: np.ndarray, chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """(out, in) -> Flax (in, out). With `chw`, `in` is a C, H, W flatten (Caffe's and torch's
    order) that a Flax NHWC network flattens as H, W, C, so that axis is permuted. A size that
    does not fit is left for the caller's shape check to report with both shapes."""
    if w.ndim != 2:
        return w
    out = w.shape[0]
    if chw is not None and w.shape[1] == math.prod(chw):
        return w.reshape(out, *chw).transpose(2, 3, 1, 0).reshape(-1, out)
    return w.T


def to_flax(flat_key: str, value: np.ndarray) -> np.ndarray:
    """A torch array in the Flax layout of `flat_key`'s variable."""
    if flat_key.endswith("/kernel") and value.ndim == 4:
        return conv_kernel(value)
    if flat_key.endswith("/kernel") and value.ndim == 2:
        return dense_kernel(value)
    return value


def variables_from_state_dict(
    state_dict: dict[str, Any],
    reference: dict[str, Any],
    model: str,
    source: str = "state dict",
    key: Callable[[str], str] = torch_key,
) -> dict[str, Any]:
    """Flax variables shaped like `reference` (`reference_params(module, ...)`) from a
    torch state dict of the same network (`model` names it in errors), as float32 NumPy arrays.
    `key` maps a flat Flax key to the state dict's (default: the path rule above; a network
    named otherwise, e.g. EfficientNet-Lite's `_blocks.3._expand_conv`, passes its own)."""
    wanted = {key(k): (k, v.shape) for k, v in flatten(reference).items()}
    flat = {}
    for key, value in state_dict.items():
        if key.endswith(IGNORED):
            continue
        if key not in wanted:
            raise WeightsFileError(f"{source}: unexpected key {key} for {model}")
        flax_key, shape = wanted[key]
        value = np.asarray(value)
        if tuple(value.shape) != torch_shape(flax_key, shape):
            raise WeightsFileError(
                f"{source}: {key} has shape {tuple(value.shape)}, {model} expects "
                f"{torch_shape(flax_key, shape)}"
            )
        flat[flax_key] = np.ascontiguousarray(to_flax(flax_key, value.astype(np.float32)))
    missing = [key for key in wanted if key not in state_dict]
    if missing:
        raise WeightsFileError(f"{source}: missing {len(missing)} keys, first {missing[0]}")
    variables = unflatten(flat)
    check_matches(source, variables, reference)
    return variables


def num_outputs(state_dict: dict[str, Any], key: str, default: int = 1000) -> int:
    """The class count of a state dict: the length of its classifier bias `key`."""
    bias = state_dict.get(key)
    return default if bias is None else int(np.shape(bias)[0])
