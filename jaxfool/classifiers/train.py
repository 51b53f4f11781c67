"""Trains Caffe's MNIST LeNet with optax, reproducing `examples/mnist/lenet_solver.prototxt`.

Caffe's solver: SGD, momentum 0.9, weight decay 5e-4, lr policy "inv"
(lr = base_lr * (1 + gamma * iter)^-power, gamma 1e-4, power 0.75), batch 64, 10,000 iterations.
The LeNet prototxt gives biases `lr_mult: 2` (weights 1) and `decay_mult` 1 throughout.
Caffe's per-iteration update (`sgd_solver.cpp`, Regularize + ComputeUpdateValue + Update) is

    g = grad + decay * w;   v = momentum * v + lr * lr_mult * g;   w = w - v

with `iter` counting from 0 at the first update. Weights are initialised as Caffe's `xavier`
filler does (uniform in +-sqrt(3 / fan_in)) and biases at zero, instead of Flax's default
lecun_normal, so that the whole recipe is Caffe's. Input: pixel/256 (Caffe `scale: 0.00390625`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfool.classifiers.nets.lenet import LeNet

Params = Any
LogFn = Callable[[int, float, float], None]


def inv_lr_schedule(base_lr: float, gamma: float, power: float) -> optax.Schedule:
    """Caffe's "inv" policy: lr(iter) = base_lr * (1 + gamma * iter)^(-power), iter from 0."""
    return lambda count: base_lr * (1.0 + gamma * count) ** (-power)


def bias_mask(params: Params) -> Params:
    """True at every leaf named `bias` (these get Caffe's `lr_mult: 2`)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "bias", params
    )


def caffe_lenet_optimizer(
    base_lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    gamma: float = 1e-4,
    power: float = 0.75,
) -> optax.GradientTransformation:
    """Caffe's SGD for LeNet as an optax chain; updates are meant for `optax.apply_updates`.

    Order matters: decay is added to the gradient, then it is scaled by -lr * lr_mult, and only
    then accumulated by `trace`, so the momentum buffer holds -v of Caffe's v = m*v + lr*g
    (optax.sgd would scale after the trace, which differs once the lr changes).
    """
    schedule = inv_lr_schedule(base_lr, gamma, power)
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.masked(optax.scale(2.0), bias_mask),
        optax.scale_by_schedule(lambda count: -schedule(count)),
        optax.trace(decay=momentum, nesterov=False),
    )


def preprocess(images: np.ndarray | jnp.ndarray) -> jnp.ndarray:
    """uint8 [N, 28, 28] -> float32 NHWC [N, 28, 28, 1] scaled by 1/256 (Caffe's 0.00390625)."""
    return jnp.asarray(images, jnp.float32)[..., None] * (1.0 / 256.0)


def num_outputs(params: Params) -> int:
    """The number of classes of LeNet params (the width of ip2; a static shape, so jit-safe)."""
    return int(params["ip2"]["bias"].shape[0])


def lenet_apply(params: Params, images: jnp.ndarray) -> jnp.ndarray:
    """Logits [B, K] of LeNet params with K = `num_outputs(params)` outputs."""
    return LeNet(num_outputs(params)).apply({"params": params}, images)


def init_lenet(key: jax.Array, num_classes: int = 10) -> Params:
    """LeNet parameters with Caffe's xavier kernels (U[+-sqrt(3/fan_in)]) and zero biases.

    num_classes: width of ip2; 11 for the retraining experiment's extra "fooling" class.
    The keys per layer do not depend on it, so conv1..ip1 start the same for 10 and 11.
    """
    model = LeNet(num_classes)
    shapes = jax.eval_shape(model.init, key, jnp.zeros((1, 28, 28, 1), jnp.float32))["params"]
    xavier = jax.nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
    names = sorted(shapes)
    keys = dict(zip(names, jax.random.split(key, len(names)), strict=True))
    return {
        name: {
            "kernel": xavier(keys[name], shapes[name]["kernel"].shape, jnp.float32),
            "bias": jnp.zeros(shapes[name]["bias"].shape, jnp.float32),
        }
        for name in names
    }


def loss_fn(params: Params, images: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Mean softmax cross-entropy over the batch (Caffe's SoftmaxWithLoss, VALID normalisation)."""
    logits = lenet_apply(params, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _step(
    tx: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
) -> tuple[Params, optax.OptState, jnp.ndarray]:
    loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


DEFAULT_OPTIMIZER = caffe_lenet_optimizer()


@jax.jit
def train_step(
    params: Params, opt_state: optax.OptState, images: jnp.ndarray, labels: jnp.ndarray
) -> tuple[Params, optax.OptState, jnp.ndarray]:
    """One step of Caffe's LeNet solver on a preprocessed batch (float32 [B, 28, 28, 1]).

    Returns (params, opt_state, loss); opt_state comes from `DEFAULT_OPTIMIZER.init(params)`.
    """
    return _step(DEFAULT_OPTIMIZER, params, opt_state, images, labels)


@partial(jax.jit, static_argnums=0)
def _indexed_step(
    tx: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    data: jnp.ndarray,
    labels: jnp.ndarray,
    order: jnp.ndarray,
    step: jnp.ndarray,
) -> tuple[Params, optax.OptState, jnp.ndarray]:
    """Step `step` of the run on the batch indexed by order[step]; the gather runs on device."""
    idx = order[step]
    return _step(tx, params, opt_state, data[idx], labels[idx])


def batch_indices(key: jax.Array, num_examples: int, steps: int, batch_size: int) -> np.ndarray:
    """[steps, batch_size] example indices: a fresh seeded permutation per epoch, concatenated.

    Batches run across epoch boundaries (as Caffe's data layer wraps around), so no example
    is dropped and any batch size works.
    """
    epochs = -(-steps * batch_size // num_examples)
    keys = jax.random.split(key, epochs)
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_examples))(keys)
    flat = np.asarray(perms, np.int32).reshape(-1)[: steps * batch_size]
    return flat.reshape(steps, batch_size)


def train_lenet(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    steps: int,
    batch_size: int = 64,
    seed: int,
    log_fn: LogFn | None = None,
    log_every: int = 500,
    optimizer: optax.GradientTransformation | None = None,
    num_classes: int = 10,
) -> Params:
    """Trains LeNet from scratch on uint8 images [N, 28, 28] and labels [N]; returns params.

    num_classes: outputs of the net (labels must lie in 0..num_classes-1); 11 for the
    retraining experiment, whose extra class holds fooling images.

    Deterministic: the same seed gives bit-identical params on the same machine. Every
    `log_every` steps the host waits for the device and, if given, calls `log_fn(step, mean
    loss since the last call, steps/s since the last call)` (the first rate includes compiling).

    The host dispatches one jitted step at a time (asynchronously; it only waits at log
    points). A `lax.scan` over chunks of steps was tried and is ~6x slower on XLA:CPU
    (jax 0.10): inside a while loop the weight-gradient convolutions keep a non-canonical
    layout and miss the fast convolution kernels (7 vs 47 steps/s on 2 cores).
    """
    if steps < 1 or batch_size < 1 or log_every < 1:
        raise ValueError(
            f"steps, batch_size, log_every must be >= 1, got {steps}, {batch_size}, {log_every}"
        )
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (>0): {len(images)} vs {len(labels)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    lo, hi = int(np.min(labels)), int(np.max(labels))
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {lo}..{hi}")
    tx = optimizer if optimizer is not None else DEFAULT_OPTIMIZER
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = init_lenet(init_key, num_classes)
    opt_state = tx.init(params)
    data = preprocess(images)
    targets = jnp.asarray(labels, jnp.int32)
    order = jnp.asarray(batch_indices(data_key, len(images), steps, batch_size))
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        params, opt_state, loss = _indexed_step(tx, params, opt_state, data, targets, order, step)
        losses.append(loss)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            # Waiting here also keeps the host from queueing thousands of steps ahead.
            mean_loss = float(jnp.stack(losses).mean())
            t1 = time.perf_counter()
            if log_fn is not None:
                log_fn(step + 1, mean_loss, len(losses) / (t1 - t0))
            losses, t0 = [], t1
    return jax.block_until_ready(params)


@jax.jit
def _predict(params: Params, images: jnp.ndarray) -> jnp.ndarray:
    return jnp.argmax(lenet_apply(params, preprocess(images)), axis=-1)


def accuracy(params: Params, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    """Top-1 accuracy of `params` on uint8 images [N, 28, 28] with labels [N].

    The argmax runs over all of the net's outputs: for an 11-class net, a real digit called
    "fooling" (class 10) counts as wrong.
    """
    if len(images) == 0:
        raise ValueError("no images to evaluate")
    correct = 0
    for i in range(0, len(images), batch):
        pred = np.asarray(_predict(params, np.asarray(images[i : i + batch])))
        correct += int((pred == np.asarray(labels[i : i + batch])).sum())
    return correct / len(images)
