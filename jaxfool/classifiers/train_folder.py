"""Trains the image-folder networks (tiny net, CaffeNet) from scratch with Caffe's ImageNet solver.

The counterpart of `jaxfool.classifiers.train` (Caffe's MNIST LeNet) for
`jaxfool.classifiers.data.folder` datasets:
CaffeNet starts from the fillers of bvlc_reference_caffenet's train_val.prototxt, and SGD
follows its solver (lr policy "step", momentum 0.9, weight decay 5e-4, biases lr_mult 2 and
decay_mult 0). Batches are read from disk each step, mirrored at random (Caffe's
`mirror: true`) and centre-cropped for CaffeNet.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxfool.classifiers.train as train
from jaxfool.classifiers.data.folder import FolderData
from jaxfool.classifiers.protocol import Classifier
from jaxfool.classifiers.retrain_nets import FolderLogits, folder_module, num_outputs
from jaxfool.classifiers.scoring import score_images

Params = Any

# bvlc_reference_caffenet train_val.prototxt: gaussian weight std and constant bias per layer
CAFFENET_INIT = {
    "conv1": (0.01, 0.0),
    "conv2": (0.01, 1.0),
    "conv3": (0.01, 0.0),
    "conv4": (0.01, 1.0),
    "conv5": (0.01, 1.0),
    "fc6": (0.005, 1.0),
    "fc7": (0.005, 1.0),
    "fc8": (0.01, 0.0),
}


def init_folder_net(arch: str, num_classes: int, key: jax.Array, image_size: int) -> Params:
    """Fresh Flax variables of the folder network: Flax's default initialisers for the tiny
    net; for CaffeNet the reference model's own (gaussian weights, biases 0 or 1), which its
    solver's learning rate expects."""
    size = image_size if arch == "tiny" else 227
    variables = folder_module(arch, num_classes).init(
        key, jnp.zeros((1, size, size, 3), jnp.float32)
    )
    if arch == "tiny":
        return variables
    keys = dict(zip(CAFFENET_INIT, jax.random.split(key, len(CAFFENET_INIT)), strict=True))
    return {
        "params": {
            name: {
                "kernel": std * jax.random.normal(keys[name], layer["kernel"].shape),
                "bias": jnp.full(layer["bias"].shape, bias, jnp.float32),
            }
            for name, layer in variables["params"].items()
            for std, bias in [CAFFENET_INIT[name]]
        }
    }


def caffe_step_optimizer(
    base_lr: float = 0.01,
    stepsize: int = 100000,
    gamma: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> optax.GradientTransformation:
    """Caffe's ImageNet solver (lr policy "step") in the update order of Caffe's SGD, with
    CaffeNet's per-parameter multipliers: biases lr_mult 2 and decay_mult 0."""

    def schedule(count):
        return base_lr * gamma ** (count // stepsize)

    def weights_mask(params):
        return jax.tree.map(lambda b: not b, train.bias_mask(params))

    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=weights_mask),
        optax.masked(optax.scale(2.0), train.bias_mask),
        optax.scale_by_schedule(lambda count: -schedule(count)),
        optax.trace(decay=momentum, nesterov=False),
    )


@partial(jax.jit, static_argnums=(0, 1))
def _folder_step(logits_fn, tx, net, opt_state, consts, images, labels):
    def loss_fn(net):
        logits = logits_fn({"net": net, **consts}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(net)
    updates, opt_state = tx.update(grads, opt_state, net)
    return optax.apply_updates(net, updates), opt_state, loss


def train_folder_net(
    arch: str,
    num_classes: int,
    data: FolderData,
    consts: dict[str, Any],
    *,
    steps: int,
    batch_size: int,
    seed: int,
    optimizer: optax.GradientTransformation,
    log_fn: train.LogFn | None = None,
    log_every: int = 100,
) -> Params:
    """Trains a folder network from scratch: seeded init, seeded epoch shuffles, random
    left-right mirrors (Caffe's `mirror: true`), centre crop for CaffeNet."""
    init_key, order_key, mirror_key = jax.random.split(jax.random.key(seed), 3)
    net = init_folder_net(arch, num_classes, init_key, data.image_size)
    opt_state = optimizer.init(net)
    logits_fn = FolderLogits(arch, num_classes)
    order = train.batch_indices(order_key, len(data), steps, batch_size)
    flips = np.asarray(jax.random.bernoulli(mirror_key, 0.5, (steps, batch_size)))
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        images, labels = data.batch(order[step])
        images = np.where(flips[step][:, None, None, None], images[:, :, ::-1], images)
        net, opt_state, loss = _folder_step(
            logits_fn, optimizer, net, opt_state, consts, jnp.asarray(images), jnp.asarray(labels)
        )
        losses.append(loss)
        if log_fn is not None and ((step + 1) % log_every == 0 or step + 1 == steps):
            t1 = time.perf_counter()
            log_fn(step + 1, float(jnp.stack(losses).mean()), len(losses) / (t1 - t0))
            losses, t0 = [], t1
    return jax.block_until_ready(net)


def folder_accuracy(
    arch: str, net: Params, consts: dict[str, Any], data: FolderData, batch: int = 64
) -> float:
    """Top-1 accuracy over all of `data` (read batch by batch), centre crop, all outputs."""
    clf = Classifier(
        "folder", FolderLogits(arch, num_outputs(net)), (data.image_size,) * 2 + (3,), ()
    )
    params = {"net": net, **consts}
    correct = 0
    for i in range(0, len(data), batch):
        images, labels = data.batch(np.arange(i, min(i + batch, len(data))))
        predicted = np.argmax(score_images(clf, params, images, batch), axis=1)
        correct += int(np.sum(predicted == labels))
    return correct / len(data)
