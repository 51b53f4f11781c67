"""Gradient ascent (jaxfool.search.gradient_ascent, experiments/gradient_ascent.py)
on the shipped LeNet:
real outcomes at small size, the step rule and regularisers against hand or scipy computations,
input spaces against the classifiers' own preprocessing, and the CLI's outputs and errors."""

import dataclasses
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from jaxfool import classifiers
from jaxfool.base import images
from jaxfool.classifiers import preprocess, scoring
from jaxfool.classifiers.nets import resnet
from jaxfool.classifiers.nets.alexnet import AlexNetTorchvisionLogits
from jaxfool.classifiers.nets.caffenet import CaffeNetLogits
from jaxfool.classifiers.nets.efficientnet_lite import EfficientNetLiteLogits
from jaxfool.search import ascent_regularisers as regularisers
from jaxfool.search import gradient_ascent as ga

from . import script_runner
from .conftest import REPO

ASCENT = [sys.executable, str(REPO / "experiments" / "gradient_ascent.py")]
PLAIN = ga.PRESETS["plain"]


@pytest.fixture(scope="module")
def space(lenet):
    clf, params = lenet
    return ga.input_space(clf), params


def ascend(space_params, targets, config, seed=0):
    space, params = space_params
    targets = jnp.asarray(targets, jnp.int32)
    state = ga.ascend(config, space, params, targets, jax.random.key(seed))
    return state, ga.result(space, params, targets, state)


# --- outcomes -------------------------------------------------------------------------------------


RUN = dataclasses.replace(PLAIN, steps=200, stop_at=0.99)  # one compile shared by most tests
ADAM = dataclasses.replace(RUN, optimizer="adam", learning_rate=2.0)
DIGITS = (1, 4, 7, 8)


def test_vmapped_ascent_lifts_several_digits_above_099(space):
    """Four digits at once, from the mean image plus noise: each passes 0.99 within 200 steps,
    the uint8 image saved from it scores the same, and the run stops once all are there."""
    state, res = ascend(space, DIGITS, RUN)
    assert np.all(res.log_prob > math.log(0.99)), np.exp(res.log_prob)
    assert np.all(res.image_log_prob > math.log(0.99)), np.exp(res.image_log_prob)
    assert bool(jnp.all(state.classes.done)) and res.steps_run < 200
    argmax, at_099 = res.first_step[:, 0], res.first_step[:, 1]
    assert np.all((0 <= argmax) & (argmax <= at_099) & (at_099 < res.steps_run))
    assert np.all(res.first_step[:, 3] == -1)  # stopped before 0.9999


def run_steps(space_params, config, targets, num_steps, seed=0):
    sp, params = space_params
    targets = jnp.asarray(targets, jnp.int32)
    state = ga.init(config, sp, params, targets, jax.random.key(seed))
    return ga.run(config, sp, params, targets, state, jnp.int32(num_steps))


def test_batch_equals_classes_one_at_a_time(space):
    batch = run_steps(space, RUN, DIGITS, 40)
    for k in (0, 2):
        alone = run_steps(space, RUN, DIGITS[k : k + 1], 40)
        np.testing.assert_allclose(batch.classes.x[k], alone.classes.x[0], atol=2e-5)
        np.testing.assert_allclose(
            batch.classes.log_prob[k], alone.classes.log_prob[0], rtol=1e-4, atol=1e-6
        )
        np.testing.assert_array_equal(batch.classes.first_step[k], alone.classes.first_step[0])
    assert not np.allclose(batch.classes.x[0], batch.classes.x[2])  # classes did differ


def test_adam_also_lifts_digits_and_clipping_keeps_pixels_in_range(space):
    """Adam's 2-grey-level steps push pixels past 0..255; every evaluated input, and so the
    final and best ones, is clipped back inside."""
    sp, params = space
    mid = run_steps(space, ADAM, (0, 6), 3)
    pixels = np.asarray(sp.decode(params, mid.classes.x))
    assert pixels.min() < -1 or pixels.max() > 256  # the update left the range
    state, res = ascend(space, (0, 6), ADAM)
    assert np.all(res.log_prob > math.log(0.99)), np.exp(res.log_prob)
    for x in (state.classes.x, state.classes.best_x):
        pixels = np.asarray(sp.decode(params, x))
        assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
        assert np.any(np.abs(pixels) < 1e-3)  # clipped to the bound


# --- the step rule, clipping, regularisers --------------------------------------------------------


def test_progress_lr_matches_hand_computation():
    def lr(p, gsq):
        return float(ga.progress_lr(jnp.log(jnp.float32(p)), jnp.float32(gsq), 0.02, 0.1, 1e7))

    assert lr(0.5, 25.0) == pytest.approx(0.02 / 25)  # early_prog binds: min(0.02, 0.05)
    assert lr(0.9, 25.0) == pytest.approx(0.1 * 0.1 / 25)  # late_prog_mult (1 - p) binds
    assert lr(0.5, 1e-12) == pytest.approx(1e7)  # max_lr binds
    assert lr(0.5, 0.0) == 0.0


def test_one_step_equals_the_original_update_by_hand(space):
    """X1 = clip(X0) + lr dp/dX with lr = min(max_lr, desired / ||dp/dX||^2), computed here
    with plain softmax and float64 arithmetic on the host, from a random 0..300 grey start."""
    sp, params = space
    target = jnp.asarray([3])
    state = ga.init(RUN, sp, params, target, jax.random.key(5))
    start = jax.random.uniform(jax.random.key(6), (1, 28, 28, 1), minval=0, maxval=300) / 256
    after = ga.run(
        RUN, sp, params, target, state.replace(classes=state.classes.replace(x=start)), jnp.int32(1)
    )

    lower, upper = sp.bounds(params)
    x0 = jnp.clip(start[0], lower, upper)
    prob = lambda x: jax.nn.softmax(sp.net(params, x[None])[0])[3]  # noqa: E731
    p, g = float(prob(x0)), np.asarray(jax.grad(prob)(x0), np.float64)
    desired = min(RUN.early_prog, RUN.late_prog_mult * (1 - p))
    lr = min(RUN.max_lr, desired / np.sum(g * g))
    expected = np.asarray(x0, np.float64) + lr * g
    np.testing.assert_allclose(after.classes.x[0], expected, rtol=1e-4, atol=1e-6)
    assert int(after.step) == 1 and float(after.classes.log_prob[0]) == pytest.approx(math.log(p))


@pytest.mark.parametrize("sigma", [0.3, 0.4, 1.0])
def test_blur_is_scipys_gaussian_filter_and_keeps_the_mean(sigma):
    x = np.random.default_rng(0).normal(size=(17, 13, 3)).astype(np.float32)
    kernel = regularisers.gaussian_kernel(sigma)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(kernel, kernel[::-1])
    blurred = np.asarray(regularisers.gaussian_blur(jnp.asarray(x), sigma))
    expected = np.stack([scipy.ndimage.gaussian_filter(x[..., c], sigma) for c in range(3)], -1)
    np.testing.assert_allclose(blurred, expected, atol=1e-5)
    np.testing.assert_allclose(blurred.mean(axis=(0, 1)), x.mean(axis=(0, 1)), atol=1e-5)
    assert blurred.std() < x.std()


def test_pruning_zeroes_the_pixels_below_the_percentile():
    rng = np.random.default_rng(0)
    norms = rng.permutation(np.arange(101, dtype=np.float32)).reshape(1, 101)
    direction = rng.normal(size=(1, 101, 3)).astype(np.float32)
    x = direction / np.linalg.norm(direction, axis=-1, keepdims=True) * norms[..., None]
    out = np.asarray(regularisers.prune_small_norm(jnp.asarray(x), 20))
    zeroed = np.all(out == 0, axis=-1)
    np.testing.assert_array_equal(zeroed, norms < 20)  # the 20th percentile is 20: kept
    np.testing.assert_array_equal(out[~zeroed], x[~zeroed])

    grad = rng.normal(size=x.shape).astype(np.float32)
    benefit = np.sum(-x * grad, axis=-1)
    for absolute, b in ((False, benefit), (True, np.abs(benefit))):
        out = np.asarray(
            regularisers.prune_small_benefit(jnp.asarray(x), jnp.asarray(grad), 30, absolute)
        )
        small = b < np.percentile(b, 30)
        assert small.sum() == 30  # 101 pixels: the 30th percentile is the 31st smallest
        np.testing.assert_array_equal(out, np.where(small[..., None], 0, x))

    flat = np.asarray(regularisers.prune_small_values(jnp.asarray(x), 50))
    np.testing.assert_array_equal(flat == 0, np.abs(x) < np.percentile(np.abs(x), 50))


def test_milestones_are_compared_in_log_space():
    first = jnp.asarray([-1, -1, -1, 7], jnp.int32)
    got = ga.record_milestones(first, jnp.int32(9), jnp.log1p(jnp.float32(-5e-4)), True)
    np.testing.assert_array_equal(got, [9, 9, 9, 7])  # 0.9995: not > 0.9999; 7 kept
    first = jnp.full((4,), -1, jnp.int32)
    p_99999 = ga.record_milestones(first, jnp.int32(2), jnp.log1p(jnp.float32(-1e-5)), False)
    p_9999 = ga.record_milestones(first, jnp.int32(2), jnp.log1p(jnp.float32(-1.01e-4)), False)
    np.testing.assert_array_equal(p_99999, [-1, 2, 2, 2])
    np.testing.assert_array_equal(p_9999, [-1, 2, 2, -1])


def test_presets_are_the_originals_hyperparameters():
    rows = {
        "plain": (0.0, 500, 0.02, 0.1, 0.0, 0, 0, 0),
        "169": (0.01, 1500, 0.03, 0.02, 0.0, 0, 0, 0),
        "188": (0.001, 1000, 0.03, 0.05, 0.4, 0, 0, 0),
        "360": (0.001, 1500, 0.03, 0.05, 0.3, 20, 0, 20),
    }
    for name, row in rows.items():
        p = ga.PRESETS[name]
        got = (p.decay, p.steps, p.early_prog, p.late_prog_mult, p.blur_radius)
        got += (p.small_norm_percentile, p.px_benefit_percentile, p.px_abs_benefit_percentile)
        assert got == row and p.max_lr == 1e7 and p.start == "mean_plus", name
    assert (ga.PRESETS["188"].blur_every, ga.PRESETS["360"].blur_every) == (2, 1)
    with pytest.raises(ValueError, match="blur_radius"):
        dataclasses.replace(PLAIN, blur_radius=0.2)


# --- input spaces ---------------------------------------------------------------------------------


def test_lenet_space_is_the_classifiers_preprocessing(lenet):
    clf, params = lenet
    sp = ga.input_space(clf)
    params = {**params, "mean": jnp.full((28, 28, 1), 33.0)}
    imgs = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)), jnp.uint8)
    np.testing.assert_allclose(
        sp.net(params, sp.from_image(params, imgs)), clf.logits(params, imgs), atol=1e-5
    )
    np.testing.assert_array_equal(sp.to_image(params, sp.from_image(params, imgs)), imgs)
    lower, upper = sp.bounds(params)
    np.testing.assert_allclose(lower, -33 / 256)
    np.testing.assert_allclose(upper, (255 - 33) / 256)


def imagenet_space(logits) -> ga.InputSpace:
    return ga.input_space(classifiers.Classifier("x", logits, (256, 256, 3), ("a",)))


@pytest.mark.parametrize("variant", ["lite0", "lite1"])
def test_efficientnet_space_is_the_eval_crop(variant):
    sp = imagenet_space(EfficientNetLiteLogits(variant))
    img = jnp.asarray(np.random.default_rng(1).integers(0, 256, (1, *sp.image_shape)), jnp.uint8)
    expected = preprocess.efficientnet_eval_crop(img, sp.shape[0])
    np.testing.assert_allclose(sp.from_image({}, img), expected, atol=1e-5)
    back = sp.to_image({}, sp.from_image({}, img))
    np.testing.assert_array_equal(back[:, 16:-16, 16:-16], img[:, 16:-16, 16:-16])
    assert np.all(np.asarray(back[:, :16]) == 127)


def test_caffe_and_torchvision_spaces_are_their_preprocessing():
    rng = np.random.default_rng(2)
    img = jnp.asarray(rng.integers(0, 256, (2, 256, 256, 3)), jnp.uint8)
    caffe = imagenet_space(CaffeNetLogits())
    params = {"mean_227": jnp.asarray(rng.uniform(90, 130, (227, 227, 3)), jnp.float32)}
    expected = preprocess.caffe_center_crop(img[..., ::-1].astype(jnp.float32), params["mean_227"])
    np.testing.assert_allclose(caffe.from_image(params, img), expected, atol=1e-4)
    back = caffe.to_image(params, caffe.from_image(params, img))
    np.testing.assert_array_equal(back[:, 14:241, 14:241], img[:, 14:241, 14:241])

    tv = imagenet_space(AlexNetTorchvisionLogits())
    expected = preprocess.torchvision_eval_input(img)
    np.testing.assert_allclose(tv.from_image({}, img), expected, atol=1e-4)
    lower, upper = tv.bounds({})
    np.testing.assert_allclose(
        lower[0, 0], -np.divide(preprocess.TORCHVISION_MEAN, preprocess.TORCHVISION_STD), rtol=1e-6
    )


# --- the CLI --------------------------------------------------------------------------------------


def ascent_cli(*args):
    return script_runner.run(ASCENT + list(args), capture_output=True, text=True, timeout=300)


def test_cli_writes_a_run_and_refuses_to_overwrite_it(tmp_path, lenet):
    out = tmp_path / "run"
    res = ascent_cli("--classes=1,4", "--steps=150", "--log_every=50", f"--out={out}")
    assert res.returncode == 0, res.stderr
    assert "step    50/150" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "lenet" and summary["steps_completed"] == 150
    assert [c["index"] for c in summary["classes"]] == [1, 4]
    clf, params = lenet
    for c in summary["classes"]:
        assert c["confidence"] > 0.99 and set(c["steps_to"]) == {
            "argmax",
            "0.99",
            "0.999",
            "0.9999",
        }
        assert 0 <= c["steps_to"]["argmax"] <= c["steps_to"]["0.99"] < 150
        png = images.load_png(out / c["image"])
        lp = scoring.log_softmax(clf.logits(params, jnp.asarray(png[None])))[0, c["index"]]
        assert np.exp(np.float64(lp)) == pytest.approx(c["image_confidence"], rel=1e-5)
    assert (out / "gallery.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3

    before = (out / "summary.json").read_bytes()
    again = ascent_cli("--classes=1", "--steps=5", f"--out={out}")
    assert again.returncode == 2 and "already holds" in again.stderr
    assert (out / "summary.json").read_bytes() == before


@pytest.mark.parametrize(
    "flag, named", [("--preset=nope", "--preset"), ("--classes=3,12", "--classes")]
)
def test_cli_bad_flag_is_a_one_line_error(tmp_path, flag, named):
    res = ascent_cli(flag, f"--out={tmp_path / 'x'}")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradient_ascent.py: error: " + named)
    assert not (tmp_path / "x").exists()


def test_torch_layout_nets_and_your_own_model_get_an_input_space():
    """resnet18 (and every torch-layout net): the torchvision space, whose net on from_image is
    the classifier's logits; your own model: the image itself through its logits."""
    clf, params = classifiers.load_classifier("resnet18", "random")
    space = ga.input_space(clf)
    assert isinstance(space, ga.TorchvisionSpace) and space.module == resnet.ResNet(18, 1000)
    img = jnp.asarray(np.random.default_rng(3).integers(0, 256, (2, 256, 256, 3)), jnp.uint8)
    np.testing.assert_allclose(
        space.net(params, space.from_image(params, img)), clf.logits(params, img), atol=1e-4
    )
    mine, mine_params = classifiers.load_classifier("tests.my_mlp:factory")
    own = ga.input_space(mine)
    assert isinstance(own, ga.ImageSpace) and own.shape == mine.image_shape
    digits = jnp.asarray(np.random.default_rng(4).integers(0, 256, (3, 28, 28, 1)), jnp.uint8)
    np.testing.assert_allclose(
        own.net(mine_params, own.from_image(mine_params, digits)),
        mine.logits(mine_params, digits),
        atol=1e-5,
    )
    np.testing.assert_array_equal(
        own.to_image(mine_params, own.from_image(mine_params, digits)), digits
    )


def test_cli_runs_your_own_model(tmp_path):
    res = ascent_cli("--model=tests.my_mlp:factory", "--classes=0-1", "--steps=20",
                     f"--out={tmp_path / 'a'}")  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = tmp_path / "a"
    summary = json.loads((out / "summary.json").read_text())
    mine, params = classifiers.load_classifier("tests.my_mlp:factory")
    records = summary["classes"]
    assert [r["index"] for r in records] == [0, 1]
    saved = np.stack([images.load_png(out / r["image"]) for r in records])
    log_p = np.asarray(scoring.score(mine.logits, params, jnp.asarray(saved)))
    for r, row in zip(records, log_p, strict=True):
        # the saved image, scored by your own model, is the image the record's confidence is of
        assert np.exp(row[r["index"]]) == pytest.approx(r["image_confidence"], rel=1e-5)
        assert r["label"] == mine.labels[r["index"]] and set(r["steps_to"]) == set(ga.MILESTONES)
