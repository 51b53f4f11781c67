"""Fooling images by gradient ascent on the input (the paper's §3.7, `find_fooling_image.py`).

The ascent climbs the softmax probability p(target | X) of one class, in the network's
*preprocessed* input space X (mean-subtracted, scaled, cropped: what the first layer sees), as
the original does on CaffeNet's mean-subtracted BGR 227 x 227 input. One step, per class:

    X <- clip(X) to the valid pixel range            (0..255 after undoing the preprocessing)
    p, g = p(target | X), d p / d X
    lr = min(max_lr, min(early_prog, late_prog_mult (1 - p)) / ||g||^2)   ('progress' policy)
    X <- (X + lr g) (1 - decay)                      (decay: L2 pull toward the mean image, X=0)
    optional: Gaussian blur every k steps; zero the pixels of smallest norm / predicted benefit
              (`jaxfool.search.ascent_regularisers`)

Many classes run at once: one jitted `lax.while_loop` over steps, `vmap` over target classes.
Probabilities are compared in log space (`scoring.log_softmax`), so 0.9999 and 0.99999 stay
distinct and 1 - p stays exact where float32 softmax would round p to 1.

Input spaces (`input_space(classifier)`) describe, per model, the net on preprocessed float
input, the affine map between 0..255 RGB pixels and that input, and where the net's input sits
in the classifier's uint8 image (its eval crop), so an ascended X saves as an image that the
classifier itself scores the same way (up to rounding to whole grey levels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxfool.classifiers import registry as classifiers
from jaxfool.classifiers import scoring
from jaxfool.classifiers.protocol import InputSpace, TorchvisionSpace  # noqa: F401  (the model files' spaces)
from jaxfool.search.ascent_regularisers import regularise

# --- hyperparameters ------------------------------------------------------------------------------

STARTS = ("mean_plus", "randu", "zero")
OPTAX_OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "adam": optax.adam,
    "sgd": optax.sgd,
    "rmsprop": optax.rmsprop,
    "nadam": optax.nadam,
    "lion": optax.lion,
}
OPTIMIZERS = ("progress", *OPTAX_OPTIMIZERS)


@dataclass(frozen=True)
class AscentConfig:
    """One run's settings: the arguments of the original `find_image` plus our options.

    steps .. px_abs_benefit_percentile: the original's names and meaning (N = steps).
    start: 'mean_plus' (the mean image + N(0, 1) grey-level noise), 'randu' (U(0, 255)
        pixels) or 'zero' (the mean image). One start image is drawn and shared by every
        class, as the original seeds each class's run with the same `rseed`.
    optimizer: 'progress' (the original's policy) or an optax optimiser; optax optimisers
        work in grey levels (their update is scaled into the input space), so one
        `learning_rate` suits every model. Decay, blur and pruning apply after either.
    stop_at: stop a class once p(target) >= stop_at (None: run all steps, as the original,
        whose `break` is commented out).
    """

    name: str = "plain"
    steps: int = 500
    decay: float = 0.0
    early_prog: float = 0.02
    late_prog_mult: float = 0.1
    max_lr: float = 1e7
    blur_radius: float = 0.0
    blur_every: int = 1
    small_val_percentile: float = 0.0
    small_norm_percentile: float = 0.0
    px_benefit_percentile: float = 0.0
    px_abs_benefit_percentile: float = 0.0
    start: str = "mean_plus"
    optimizer: str = "progress"
    learning_rate: float = 1.0
    stop_at: float | None = None

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}: must be >= 1")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay={self.decay}: must be in [0, 1)")
        if self.blur_radius != 0 and self.blur_radius < 0.3:
            raise ValueError(f"blur_radius={self.blur_radius}: 0 or >= 0.3 (as the original)")
        if self.blur_every < 1:
            raise ValueError(f"blur_every={self.blur_every}: must be >= 1")
        for name in ("small_val", "small_norm", "px_benefit", "px_abs_benefit"):
            pct = getattr(self, f"{name}_percentile")
            if not 0.0 <= pct <= 100.0:
                raise ValueError(f"{name}_percentile={pct}: must be in [0, 100]")
        if self.start not in STARTS:
            raise ValueError(f"start={self.start!r}: choose one of {', '.join(STARTS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate}: must be > 0")
        if self.stop_at is not None and not 0.0 < self.stop_at < 1.0:
            raise ValueError(f"stop_at={self.stop_at}: must be in (0, 1)")


# The original's hyperparameter sets (its `find_fooling_image.py`, chosen by `hp_seed`): -1
# (plain gradient ascent) and the three random-search draws behind the paper's supplementary
# figures. max_lr is 1e7 throughout.
PRESETS: dict[str, AscentConfig] = {
    "plain": AscentConfig("plain", steps=500, decay=0.0, early_prog=0.02, late_prog_mult=0.1),
    "169": AscentConfig(
        "169", steps=1500, decay=0.01, early_prog=0.03, late_prog_mult=0.02, blur_every=4
    ),
    "188": AscentConfig(
        "188",
        steps=1000,
        decay=0.001,
        early_prog=0.03,
        late_prog_mult=0.05,
        blur_radius=0.4,
        blur_every=2,
    ),
    "360": AscentConfig(
        "360",
        steps=1500,
        decay=0.001,
        early_prog=0.03,
        late_prog_mult=0.05,
        blur_radius=0.3,
        blur_every=1,
        small_norm_percentile=20,
        px_abs_benefit_percentile=20,
    ),
}

# first_step columns: the original's iter_maj, iter_99, iter_999, iter_9999
MILESTONES = ("argmax", "0.99", "0.999", "0.9999")
LOG_THRESHOLDS = tuple(math.log(float(t)) for t in MILESTONES[1:])


# --- input spaces ---------------------------------------------------------------------------------


def input_space(clf: classifiers.Classifier) -> InputSpace:
    """The preprocessed input space of a classifier (its params work unchanged): the model
    file's own (`logits.input_space()`), else the image itself (`ImageSpace`)."""
    logits = clf.logits
    if hasattr(logits, "input_space"):
        return logits.input_space()
    if getattr(logits, "returns_log_probs", False):
        raise ValueError(f"{clf.name}: gradient ascent needs a classifier's logits")
    return ImageSpace(clf.image_shape, clf.image_shape, (0, 0), (1.0,) * clf.image_shape[-1], clf)


@dataclass(frozen=True)
class ImageSpace(InputSpace):
    """Any other classifier (your own model): the input is the image itself, 0..255 floats
    through the classifier's own preprocessing (which must be differentiable in them)."""

    classifier: classifiers.Classifier | None = None

    def net(self, params, x):
        return self.classifier.logits(params, x)

    def encode(self, params, pixels):
        return pixels

    def decode(self, params, x):
        return x


# --- the pieces of one step -----------------------------------------------------------------------


def progress_lr(
    log_p: jax.Array, grad_sq_norm: jax.Array, early_prog: float, late_prog_mult: float, max_lr
) -> jax.Array:
    """The 'progress' step size: lr = min(max_lr, desired / ||g||^2), where
    desired = min(early_prog, late_prog_mult (1 - p)) is the first-order gain lr ||g||^2 it
    aims for. 1 - p comes from log p (exact near p = 1); a zero gradient gives lr = 0."""
    desired = jnp.minimum(early_prog, late_prog_mult * -jnp.expm1(log_p))
    ok = (grad_sq_norm > 0) & (desired > 0)
    lr = jnp.minimum(max_lr, desired / jnp.where(ok, grad_sq_norm, 1.0))
    return jnp.where(ok, lr, 0.0)


def record_milestones(
    first_step: jax.Array, step: jax.Array, log_p: jax.Array, is_top: jax.Array
) -> jax.Array:
    """first_step [4]: sets the step where each milestone (argmax, > 0.99, > 0.999, > 0.9999)
    is first met; -1 while never met. Thresholds are compared in log space."""
    hits = jnp.stack([is_top, *(log_p > jnp.float32(t) for t in LOG_THRESHOLDS)])
    return jnp.where((first_step < 0) & hits, step, first_step)


def make_optimizer(config: AscentConfig) -> optax.GradientTransformation | None:
    """The optax optimiser of `config.optimizer`; None for the original 'progress' policy."""
    if config.optimizer == "progress":
        return None
    return OPTAX_OPTIMIZERS[config.optimizer](config.learning_rate)


# --- state and the step ---------------------------------------------------------------------------


@struct.dataclass
class ClassState:
    """Per target class (leading axis K when batched)."""

    x: jax.Array  # [h, w, c] the current input, preprocessed space
    opt_state: Any  # optax state, () for 'progress'
    log_prob: jax.Array  # log p(target) at the last evaluated step
    best_x: jax.Array  # the clipped input of the highest log p so far
    best_log_prob: jax.Array
    first_step: jax.Array  # int32 [4], see MILESTONES
    done: jax.Array  # bool: reached stop_at, or the gradient vanished


@struct.dataclass
class AscentState:
    step: jax.Array  # int32: the next step to evaluate
    classes: ClassState


def target_log_prob(
    space: InputSpace, params: Any, x: jax.Array, target: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(log p(target | x), whether target is the argmax) for one input x [h, w, c]."""
    log_probs = scoring.log_softmax(space.net(params, x[None]))[0]
    return log_probs[target], jnp.argmax(log_probs) == target


def ascent_step(
    config: AscentConfig,
    space: InputSpace,
    params: Any,
    step: jax.Array,
    state: ClassState,
    target: jax.Array,
) -> ClassState:
    """One step for one class: clip, evaluate and record, then update unless done or last."""
    lower, upper = space.bounds(params)
    x = jnp.clip(state.x, lower, upper)
    (log_p, is_top), grad_log_p = jax.value_and_grad(
        partial(target_log_prob, space, params), has_aux=True
    )(x, target)
    grad = jnp.exp(log_p) * grad_log_p  # d p / d x: the original backpropagates from `prob`
    grad_sq_norm = jnp.sum(grad * grad)

    if config.optimizer == "progress":
        lr = progress_lr(
            log_p, grad_sq_norm, config.early_prog, config.late_prog_mult, config.max_lr
        )
        moved, opt_state = x + lr * grad, state.opt_state
    else:
        scale = jnp.asarray(space.grey_scale, jnp.float32)
        updates, opt_state = make_optimizer(config).update(-grad * scale, state.opt_state)
        moved = x + updates * scale  # optax works in grey levels: dP = dX / scale
    moved = regularise(config, moved, grad, step)

    reached = False if config.stop_at is None else log_p >= math.log(config.stop_at)
    done = state.done | reached | (grad_sq_norm == 0)
    move = ~done & (step < config.steps - 1)
    better = log_p > state.best_log_prob
    return ClassState(
        x=jnp.where(move, moved, x),
        opt_state=jax.tree.map(
            lambda new, old: jnp.where(move, new, old), opt_state, state.opt_state
        ),
        log_prob=log_p,
        best_x=jnp.where(better, x, state.best_x),
        best_log_prob=jnp.maximum(log_p, state.best_log_prob),
        first_step=record_milestones(state.first_step, step, log_p, is_top),
        done=done,
    )


# --- running --------------------------------------------------------------------------------------


def start_image(config: AscentConfig, space: InputSpace, params: Any, key: jax.Array) -> jax.Array:
    """The start X0 [h, w, c] in the input space (see AscentConfig.start)."""
    scale = jnp.asarray(space.grey_scale, jnp.float32)
    if config.start == "mean_plus":
        return jax.random.normal(key, space.shape, jnp.float32) * scale
    if config.start == "randu":
        pixels = jax.random.uniform(key, space.shape, jnp.float32, 0.0, 255.0)
        return space.encode(params, pixels)
    return jnp.zeros(space.shape, jnp.float32)


@partial(jax.jit, static_argnums=(0, 1))
def init(
    config: AscentConfig, space: InputSpace, params: Any, targets: jax.Array, key: jax.Array
) -> AscentState:
    """The state before step 0 for target classes [K]; all classes share the start image."""
    k = targets.shape[0]
    x0 = jnp.broadcast_to(start_image(config, space, params, key), (k, *space.shape))
    opt = make_optimizer(config)
    neg_inf = jnp.full((k,), -jnp.inf, jnp.float32)
    classes = ClassState(
        x=x0,
        opt_state=() if opt is None else jax.vmap(opt.init)(x0),
        log_prob=neg_inf,
        best_x=x0,
        best_log_prob=neg_inf,
        first_step=jnp.full((k, len(MILESTONES)), -1, jnp.int32),
        done=jnp.zeros((k,), bool),
    )
    return AscentState(step=jnp.int32(0), classes=classes)


@partial(jax.jit, static_argnums=(0, 1))
def run(
    config: AscentConfig,
    space: InputSpace,
    params: Any,
    targets: jax.Array,
    state: AscentState,
    num_steps: jax.Array,
) -> AscentState:
    """Up to `num_steps` more steps for every class at once (vmapped), stopping early once
    every class is done or `config.steps` is reached. `num_steps` is traced: one compile."""
    end = jnp.minimum(state.step + num_steps, config.steps)
    step_all = jax.vmap(ascent_step, in_axes=(None, None, None, None, 0, 0))

    def cond(s: AscentState) -> jax.Array:
        return (s.step < end) & ~jnp.all(s.classes.done)

    def body(s: AscentState) -> AscentState:
        classes = step_all(config, space, params, s.step, s.classes, targets)
        return AscentState(step=s.step + 1, classes=classes)

    return jax.lax.while_loop(cond, body, state)


def finished(config: AscentConfig, state: AscentState) -> bool:
    return int(state.step) >= config.steps or bool(jnp.all(state.classes.done))


@dataclass(frozen=True)
class Result:
    """Host-side outcome per class (NumPy), best images as uint8 in the classifier's layout."""

    targets: np.ndarray
    log_prob: np.ndarray  # best log p(target) of the float input
    final_log_prob: np.ndarray  # at the last evaluated step
    image_log_prob: np.ndarray  # of the saved uint8 image, re-preprocessed
    first_step: np.ndarray  # [K, 4], see MILESTONES
    images: np.ndarray  # uint8 [K, H, W, C]
    steps_run: int


def result(space: InputSpace, params: Any, targets: Any, state: AscentState) -> Result:
    """Best images as uint8, and their log p re-scored from the uint8 pixels."""
    targets = jnp.asarray(targets)
    images = jax.jit(space.to_image)(params, state.classes.best_x)

    @jax.jit
    def rescore(params, images):
        log_probs = scoring.log_softmax(space.net(params, space.from_image(params, images)))
        return jnp.take_along_axis(log_probs, targets[:, None], axis=1)[:, 0]

    return Result(
        targets=np.asarray(targets),
        log_prob=np.asarray(state.classes.best_log_prob),
        final_log_prob=np.asarray(state.classes.log_prob),
        image_log_prob=np.asarray(rescore(params, images)),
        first_step=np.asarray(state.classes.first_step),
        images=np.asarray(images),
        steps_run=int(state.step),
    )


def ascend(
    config: AscentConfig,
    space: InputSpace,
    params: Any,
    targets: Any,
    key: jax.Array,
    chunk: int | None = None,
    callback: Callable[[AscentState], None] | None = None,
) -> AscentState:
    """Runs the ascent to the end for classes `targets`, `chunk` steps per host call (calling
    `callback(state)` after each chunk, e.g. to print progress)."""
    targets = jnp.asarray(targets, jnp.int32)
    state = init(config, space, params, targets, key)
    chunk = chunk or config.steps
    while not finished(config, state):
        state = run(config, space, params, targets, state, jnp.int32(chunk))
        if callback is not None:
            callback(state)
    return state
