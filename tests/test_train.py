"""Tests for `jaxfool.classifiers.train`, the shipped LeNet weights and
`experiments/train_lenet.py`."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxfool.base.npz import check_matches, flatten, load_params
from jaxfool.classifiers import train
from jaxfool.classifiers.data.mnist import BUNDLED_DIR, load_mnist

from . import script_runner
from .conftest import REPO

REPO_ROOT = REPO
SCRIPT = REPO_ROOT / "experiments" / "train_lenet.py"
SHIPPED = REPO_ROOT / "models" / "lenet_mnist.npz"
LENET_SHAPES = {
    "conv1/kernel": (5, 5, 1, 20),
    "conv1/bias": (20,),
    "conv2/kernel": (5, 5, 20, 50),
    "conv2/bias": (50,),
    "ip1/kernel": (800, 500),
    "ip1/bias": (500,),
    "ip2/kernel": (500, 10),
    "ip2/bias": (10,),
}


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(BUNDLED_DIR, "train"), load_mnist(BUNDLED_DIR, "test")


def caffe_sgd_reference(params, grads_seq, base_lr, momentum, weight_decay, gamma, power):
    """Caffe's SGDSolver in float64 NumPy: Regularize, ComputeUpdateValue, Update per iter."""
    data = {k: {n: v.astype(np.float64) for n, v in d.items()} for k, d in params.items()}
    history = {k: {n: np.zeros_like(v) for n, v in d.items()} for k, d in data.items()}
    for it, grads in enumerate(grads_seq):
        rate = base_lr * (1.0 + gamma * it) ** (-power)  # lr_policy "inv"
        for k, layer in data.items():
            for n in layer:
                lr_mult = 2.0 if n == "bias" else 1.0  # LeNet prototxt: param { lr_mult: 2 }
                diff = grads[k][n] + weight_decay * layer[n]  # decay_mult 1
                history[k][n] = momentum * history[k][n] + rate * lr_mult * diff
                layer[n] = layer[n] - history[k][n]
    return data


def test_optimizer_reproduces_caffe_sgd():
    rng = np.random.default_rng(0)

    def draw(*shape):
        return rng.normal(size=shape).astype(np.float32)

    params = {
        "conv": {"kernel": draw(3, 3, 1, 4), "bias": draw(4)},
        "ip": {"kernel": draw(5, 2), "bias": draw(2)},
    }
    grads_seq = [jax.tree.map(lambda p: draw(*p.shape), params) for _ in range(6)]
    # Large gamma and decay so that the schedule, the decay and lr_mult all matter visibly.
    hyper = dict(base_lr=0.05, momentum=0.9, weight_decay=5e-3, gamma=0.2, power=0.75)
    tx = train.caffe_lenet_optimizer(**hyper)
    got = jax.tree.map(jnp.asarray, params)
    state = tx.init(got)
    for grads in grads_seq:
        updates, state = tx.update(grads, state, got)
        got = optax.apply_updates(got, updates)
    want = caffe_sgd_reference(params, grads_seq, **hyper)
    for key, value in flatten(want).items():
        np.testing.assert_allclose(flatten(got)[key], value, rtol=0, atol=1e-6, err_msg=key)
    # The test can tell: optax.sgd applies the (decaying) lr after the momentum trace.
    schedule = train.inv_lr_schedule(hyper["base_lr"], hyper["gamma"], hyper["power"])
    wrong = optax.chain(
        optax.add_decayed_weights(hyper["weight_decay"]),
        optax.masked(optax.scale(2.0), train.bias_mask),
        optax.sgd(schedule, momentum=hyper["momentum"]),
    )
    other, state = jax.tree.map(jnp.asarray, params), wrong.init(params)
    for grads in grads_seq:
        updates, state = wrong.update(grads, state, other)
        other = optax.apply_updates(other, updates)
    assert np.abs(flatten(other)["ip/kernel"] - flatten(want)["ip/kernel"]).max() > 1e-3


def test_default_optimizer_is_lenet_solver():
    assert train.inv_lr_schedule(0.01, 1e-4, 0.75)(0) == pytest.approx(0.01)
    assert train.inv_lr_schedule(0.01, 1e-4, 0.75)(10000) == pytest.approx(0.01 * 2**-0.75)
    params = {"w": {"kernel": jnp.ones((2,)), "bias": jnp.ones((2,))}}
    tx = train.caffe_lenet_optimizer()
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    # First step with zero gradient: -lr * lr_mult * decay * w.
    np.testing.assert_allclose(updates["w"]["kernel"], -0.01 * 5e-4, rtol=1e-6)
    np.testing.assert_allclose(updates["w"]["bias"], -2 * 0.01 * 5e-4, rtol=1e-6)


def test_preprocess_is_caffe_scale():
    images = np.array([[[0, 128, 255]]], np.uint8)
    x = train.preprocess(images)
    assert x.shape == (1, 1, 3, 1) and x.dtype == jnp.float32
    np.testing.assert_array_equal(x[0, 0, :, 0], [0.0, 0.5, 255 / 256])


def test_batch_indices_cover_each_epoch_once():
    order = train.batch_indices(jax.random.key(3), 10, steps=7, batch_size=4)
    assert order.shape == (7, 4)
    flat = order.reshape(-1)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    again = train.batch_indices(jax.random.key(3), 10, steps=7, batch_size=4)
    np.testing.assert_array_equal(order, again)


def test_short_training_learns_and_is_deterministic(mnist):
    (x, y), (xt, yt) = mnist
    logged = []
    params = train.train_lenet(
        x, y, steps=300, seed=1, log_fn=lambda *a: logged.append(a), log_every=100
    )
    assert [step for step, _, _ in logged] == [100, 200, 300]
    assert logged[-1][1] < logged[0][1]
    assert train.accuracy(params, xt, yt) >= 0.90  # chance 0.10; seeds 0-4 give 0.955-0.965

    a = train.train_lenet(x, y, steps=20, seed=7)
    b = train.train_lenet(x, y, steps=20, seed=7)
    c = train.train_lenet(x, y, steps=20, seed=8)
    for key, value in flatten(a).items():
        np.testing.assert_array_equal(value, flatten(b)[key], err_msg=key)
    assert not np.array_equal(flatten(a)["ip1/kernel"], flatten(c)["ip1/kernel"])


def test_shipped_weights_classify_bundled_digits(mnist):
    _, (xt, yt) = mnist
    variables, meta = load_params(SHIPPED)
    shapes = {k: v.shape for k, v in flatten(variables).items()}
    assert shapes == {f"params/{k}": v for k, v in LENET_SHAPES.items()}
    check_matches(SHIPPED, variables, {"params": train.init_lenet(jax.random.key(0))})
    params = variables["params"]
    acc = train.accuracy(params, xt, yt)
    assert acc >= 0.97
    assert meta["test_accuracy"] == pytest.approx(acc, abs=1e-3)
    assert meta["steps"] == 10000 and meta["seed"] == 0 and meta["num_train"] == 8000


def run_script(*args: str) -> subprocess.CompletedProcess:
    return script_runner.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--steps=-1"], "--steps"),
        (["--batch_size=0"], "--batch_size"),
        (["--steps=many"], "--steps"),
        (["--data_dir=/no/such/dir"], "--data_dir"),
    ],
)
def test_script_rejects_bad_flags(tmp_path, args, flag):
    result = run_script(*args, f"--out={tmp_path / 'w.npz'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "w.npz").exists()


def test_script_refuses_to_overwrite(tmp_path):
    out = tmp_path / "w.npz"
    out.write_bytes(b"keep me")
    result = run_script(f"--out={out}", "--steps=1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and "--overwrite" in lines[0]
    assert out.read_bytes() == b"keep me"


def test_script_as_written_in_readme_trains_into_runs_not_the_shipped_file(tmp_path):
    """Defect: `python experiments/train_lenet.py` refused (its default --out was the shipped
    weights file) and --overwrite would have replaced them."""
    shipped = (REPO_ROOT / "models" / "lenet_mnist.npz").read_bytes()
    result = script_runner.run(
        [sys.executable, str(SCRIPT), "--steps=2", "--log_every=1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "lenet_mnist_s0.npz").is_file()
    assert (REPO_ROOT / "models" / "lenet_mnist.npz").read_bytes() == shipped
