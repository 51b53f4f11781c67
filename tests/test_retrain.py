"""jaxfool.studies.retrain and its report, image folders, the 11-class training in
jaxfool.classifiers.train, and
experiments/retrain.py."""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxfool.base import images
from jaxfool.base.errors import ConfigError
from jaxfool.base.npz import flatten, load_params
from jaxfool.classifiers import MODELS, train
from jaxfool.classifiers.data.folder import load_images, scan_image_folder
from jaxfool.classifiers.data.mnist import BUNDLED_DIR, load_mnist
from jaxfool.search.encodings.direct import DirectEncoding
from jaxfool.studies import retrain, retrain_report, retrain_tasks

from . import script_runner
from .conftest import REPO

RETRAIN = [sys.executable, str(REPO / "experiments" / "retrain.py")]


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(BUNDLED_DIR, "train"), load_mnist(BUNDLED_DIR, "test")


# --- train.py: 10 classes unchanged, 11 classes possible -----------------------------------------

# |param| sums after train_lenet(train digits, steps=20, seed=7) with train.py as it was before
# num_classes existed (computed with that code). A change to the 10-class path moves them.
GOLDEN_ABS_SUMS = {
    "conv1/bias": 0.2627306625363417,
    "conv1/kernel": 91.2022881169687,
    "conv2/bias": 0.42127841961337253,
    "conv2/kernel": 979.5692582845022,
    "ip1/bias": 1.3675566569263538,
    "ip1/kernel": 12235.380554048957,
    "ip2/bias": 0.1314675323665142,
    "ip2/kernel": 202.84425387298688,
}


def test_ten_class_training_is_unchanged(mnist):
    (x, y), _ = mnist
    default = flatten(train.train_lenet(x, y, steps=20, seed=7))
    explicit = flatten(train.train_lenet(x, y, steps=20, seed=7, num_classes=10))
    assert default.keys() == GOLDEN_ABS_SUMS.keys()
    for key, want in GOLDEN_ABS_SUMS.items():
        np.testing.assert_array_equal(default[key], explicit[key], err_msg=key)
        got = float(np.abs(np.asarray(default[key], np.float64)).sum())
        # sums made on an earlier machine; XLA's CPU kernels on another CPU (an AVX2 EPYC) differ
        # (6e-5 relative measured on conv1/bias after 20 steps)
        assert got == pytest.approx(want, rel=3e-4), key


def test_eleven_class_training_and_label_check(mnist):
    (x, y), (xt, yt) = mnist
    fooling = np.random.default_rng(0).integers(0, 256, (40, 28, 28), np.uint8)
    xx, yy = retrain_tasks.with_fooling_class(x, y, fooling, 10, repeats=3)
    assert len(xx) == len(x) + 120 and (yy[len(x) :] == 10).all() and yy.dtype == y.dtype
    params = train.train_lenet(xx, yy, steps=60, seed=0, num_classes=11)
    assert params["ip2"]["kernel"].shape == (500, 11) and train.num_outputs(params) == 11
    assert train.accuracy(params, xt, yt) > 0.5  # learning; the loop test checks it properly
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        train.train_lenet(xx, yy, steps=1, seed=0)  # label 10 with 10 outputs
    with pytest.raises(ValueError, match="num_classes"):
        train.train_lenet(x, y, steps=1, seed=0, num_classes=1)


# --- pure pieces of the loop ---------------------------------------------------------------------


def test_generations_to_threshold_and_stats():
    gens = np.array([0, 10, 20, 30])
    medians = np.array([[0.1, 0.2, 0.3], [0.5, 0.995, 0.4], [0.99, 0.999, 0.5], [0.9999, 1, 0.6]])
    assert retrain_report.generations_to_threshold(gens, medians, 0.99) == [20, 10, None]
    assert retrain_report.generations_to_threshold(gens, medians, 0.9999) == [30, 30, None]
    assert retrain_report.median_generations([20, 10, None]) == 20
    assert retrain_report.median_generations([20, None, None]) is None
    rnd = retrain.FoolingRound(
        images=np.zeros((3, 2, 28, 28, 1), np.uint8),
        log_prob=np.log(np.array([[0.5, 0.999], [0.99995, 0.1], [0.995, 0.2]], np.float32)),
        generations=gens,
        medians=medians,
        seconds=1.0,
    )
    row = retrain_report.round_stats(rnd, (0.99, 0.9999))
    assert row["fooling_images"] == 6 and row["generation_budget"] == 30
    assert row["median_confidence"] == pytest.approx((0.5 + 0.995) / 2, rel=1e-6)
    assert row["max_confidence"] == pytest.approx(0.99995, rel=1e-6)
    assert row["fraction_above"] == {"0.99": 0.5, "0.9999": pytest.approx(1 / 6)}
    assert row["generations_to_median"] == {"0.99": 20, "0.9999": 30}


def test_fooling_repeats_balance_the_extra_class():
    assert retrain.fooling_repeats(90, 8000, 10, balance=True) == 9  # 800 per real class
    assert retrain.fooling_repeats(2000, 8000, 10, balance=True) == 1
    assert retrain.fooling_repeats(90, 8000, 10, balance=False) == 1
    with pytest.raises(ValueError):
        retrain.fooling_repeats(0, 8000, 10, balance=True)


@pytest.mark.parametrize(
    "settings,field",
    [({"runs_per_iteration": 2, "holdout_runs": 2}, "holdout_runs"),
     ({"thresholds": (1.5,)}, "thresholds"), ({"population": 7}, "population"),
     ({"iterations": -1}, "iterations"), ({"log_every": 0}, "log_every")],
)  # fmt: skip
def test_config_checks_name_the_field(settings, field):
    with pytest.raises(ConfigError) as e:
        retrain.RetrainConfig(**settings)
    assert e.value.field == field


def test_thresholds_parse_or_name_the_flag():
    assert retrain.parse_thresholds("0.99,0.9999") == (0.99, 0.9999)
    with pytest.raises(ConfigError, match="comma-separated"):
        retrain.parse_thresholds("0.99;x")


# --- the loop on MNIST, small ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop(mnist):
    """One retraining round from the shipped LeNet: 3 runs (1 held out) against DNN_1, DNN_2
    trained 200 steps with the fooling class, then 3 runs against DNN_2."""
    (x, y), (xt, yt) = mnist
    task = retrain_tasks.mnist_task(x, y, xt, yt, steps=200)
    dnn1 = load_params(MODELS["lenet"].default_weights)[0]["params"]
    config = retrain.RetrainConfig(
        iterations=1, runs_per_iteration=3, holdout_runs=1, population=20, generations=20
    )
    saved = {}

    def on_round(i, params, rnd, row, probe):
        assert probe is None  # no --probe_emitter
        saved[i] = (params, rnd)

    rows = retrain.retrain(
        task, DirectEncoding(), config, dnn1, jax.random.key(0), on_round=on_round
    )
    return task, rows, saved


def test_retrained_net_rejects_fooling_images_and_keeps_digits(loop):
    task, rows, saved = loop
    assert [r["network"] for r in rows] == ["DNN_1", "DNN_2"]
    assert [r["outputs"] for r in rows] == [10, 11]
    (dnn1, round1), (dnn2, round2) = saved[1], saved[2]
    assert round1.images.shape == (3, 10, 28, 28, 1)  # cells = the 10 real classes only
    assert round2.log_prob.shape == (3, 10)
    trained, held = round1.images[1:].reshape(-1, 28, 28, 1), round1.images[0]
    # A 10-output net cannot put anything in the fooling class; DNN_2 does, also for the
    # held-out run's images that it never saw.
    assert retrain.rejection_rate(task, dnn1, trained) == 0.0
    assert rows[1]["rejects_previous_trained"] == retrain.rejection_rate(task, dnn2, trained)
    assert rows[1]["rejects_previous_trained"] >= 0.9
    assert rows[1]["rejects_previous_heldout"] == retrain.rejection_rate(task, dnn2, held)
    assert rows[1]["rejects_previous_heldout"] >= 0.8
    assert rows[1]["trained_fooling_images"] == 20 and rows[1]["trained_fooling_repeats"] == 40
    # ... while still reading real digits
    assert rows[0]["test_accuracy"] >= 0.97
    assert rows[1]["test_accuracy"] >= 0.9
    # Same budget, same encoding: fooling the retrained net is harder (fitness is a real
    # class's probability under the 11-way softmax, and noise now goes to class 10).
    assert rows[1]["median_confidence"] < rows[0]["median_confidence"]
    p2 = np.exp(round2.log_prob.astype(np.float64))
    assert rows[1]["max_confidence"] == pytest.approx(p2.max())


def test_evolution_fitness_is_a_real_class_of_the_eleven_way_softmax(loop):
    task, _, saved = loop
    dnn2, round2 = saved[2]
    clf, params = task.classifier(dnn2)
    assert clf.num_classes == 11
    from jaxfool.classifiers import score_images

    lp = score_images(clf, params, round2.images.reshape(-1, 28, 28, 1))
    own = lp[:, :10].reshape(3, 10, 10)[:, np.arange(10), np.arange(10)]
    np.testing.assert_allclose(own, round2.log_prob, rtol=1e-4, atol=1e-6)


def test_outputs_table_and_plot(loop):
    _, rows, _ = loop
    table = retrain_report.markdown_table(rows, (0.99, 0.9999)).splitlines()
    assert table[0].startswith("| iteration | outputs | test acc | rejects prev. (trained)")
    assert len(table) == 4 and table[2].startswith("| DNN_1 | 10 |")
    assert table[3].startswith("| DNN_2 | 11 |")
    pytest.importorskip("matplotlib", reason="the chart needs the [plots] extra")
    from jaxfool import plots

    fig = plots.retrain_confidence_figure(rows)
    medians = [r["median_confidence"] for r in rows]
    drawn = [line for ax in fig.axes for line in ax.get_lines() if "median" in line.get_label()]
    np.testing.assert_allclose(drawn[0].get_ydata(), np.clip(medians, 1e-12, 1 - 1e-12))


# --- the CLI --------------------------------------------------------------------------------------


def run(*args):
    return script_runner.run(RETRAIN + list(args), capture_output=True, text=True, timeout=600)


def test_cli_mnist_round_zero(tmp_path):
    out = tmp_path / "r"
    res = run(
        f"--out={out}",
        "--iterations=0",
        "--runs_per_iteration=1",
        "--holdout_runs=0",
        "--population=10",
        "--generations=2",
        "--log_every=1",
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "retrain.json").read_text())
    assert [r["network"] for r in summary["rows"]] == ["DNN_1"]
    assert summary["rows"][0]["test_accuracy"] >= 0.97  # the shipped LeNet
    assert summary["config"]["flags"]["encoding"] == "direct"
    assert (out / "retrain.md").read_text() in res.stdout
    assert (out / "confidence.png").read_bytes()[:4] == b"\x89PNG"
    variables, _ = load_params(out / "dnn_01.npz")
    shipped, _ = load_params(MODELS["lenet"].default_weights)
    np.testing.assert_array_equal(
        variables["params"]["ip1"]["kernel"], shipped["params"]["ip1"]["kernel"]
    )
    # refuses to reuse the directory
    before = (out / "retrain.json").read_bytes()
    res = run(f"--out={out}", "--iterations=0")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--out" in res.stderr and (out / "retrain.json").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--encoding=pixels"], "--encoding"),
        (["--population=7"], "--population"),
        (["--runs_per_iteration=2", "--holdout_runs=2"], "--holdout_runs"),
        (["--thresholds=0.99,abc"], "--thresholds"),
        (["--thresholds=2"], "--thresholds"),
        (["--iterations=-1"], "--iterations"),
        (["--iterations=many"], "--iterations"),
        (["--dataset=folder"], "--data_dir"),
        (["--dataset=folder", "--data_dir=/x", "--encoding=direct"], "--encoding"),
        (["--dnn1=/no/such.npz"], "/no/such.npz"),
        (["--data_dir=/no/such/dir"], "--data_dir"),
        (["--emitter=annealing"], "--emitter"),
        (["--emitter_params=gradient.step_min=0.1"], "--emitter_params"),
        (["--emitter=gradient", "--emitter_params=gradient.speed=2"], "--emitter_params"),
        (["--probe_emitter=isoline:0.5"], "--probe_emitter"),
        (["--probe_emitter_params=isoline.iso_sigma=0.1"], "--probe_emitter_params"),
        (["--probe_emitter=isoline", "--probe_runs=0"], "--probe_runs"),
        (["--cppn_coords=polar"], "--cppn_coords"),
        (["--encoding=cppn", "--emitter_params=original.crossover_rate=0.1"], "--emitter_params"),
        (["--resume=/no/such/run"], "--resume"),
    ],
)
def test_cli_bad_flags_give_one_line_errors(tmp_path, args, message):
    out = tmp_path / "r"
    res = run(*args, f"--out={out}")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("retrain.py: error:") and message in lines[0]
    assert not (out / "retrain.json").exists()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """A 2-class ImageNet-format stand-in: train/ and val/ of dark and bright noise PNGs
    (20 x 20, so loading resizes them)."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 6)):
        for name, lo in (("bright", 155), ("dark", 0)):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(lo, lo + 100, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


def test_scan_and_load_image_folder(image_folder):
    paths, labels, names = scan_image_folder(image_folder / "train")
    assert names == ("bright", "dark") and len(paths) == 24
    assert labels.tolist() == [0] * 12 + [1] * 12
    x = load_images(paths[:2] + paths[-2:], 16)
    assert x.shape == (4, 16, 16, 3) and x.dtype == np.uint8
    assert x[:2].mean() > 150 > 100 > x[2:].mean()
    with pytest.raises(ValueError, match="no class subfolders"):
        scan_image_folder(image_folder / "train" / "dark")


def test_cli_folder_stand_in_for_imagenet(image_folder, tmp_path):
    """The ImageNet code path end to end on the stand-in: tiny net, CPPN colour images."""
    out = tmp_path / "f"
    res = run(
        f"--out={out}",
        "--dataset=folder",
        f"--data_dir={image_folder}",
        "--arch=tiny",
        "--image_size=16",
        "--encoding=cppn",
        "--iterations=1",
        "--runs_per_iteration=2",
        "--holdout_runs=1",
        "--population=6",
        "--generations=2",
        "--log_every=1",
        "--train_steps=40",
        "--batch_size=8",
        "--base_lr=0.05",
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads((out / "retrain.json").read_text())["rows"]
    assert [r["outputs"] for r in rows] == [2, 3]
    assert rows[0]["test_accuracy"] == 1.0  # dark vs bright noise: trivially learnable
    assert rows[1]["trained_fooling_images"] == 2 and rows[1]["trained_fooling_repeats"] == 6
    assert rows[1]["rejects_previous_trained"] is not None
    fooling, meta = load_params(out / "round_01" / "fooling.npz")
    assert fooling["images"].shape == (2, 2, 16, 16, 3) and fooling["images"].dtype == np.uint8
    assert meta["network"] == "DNN_1"
    dnn2, _ = load_params(out / "dnn_02.npz")
    assert dnn2["params"]["fc"]["bias"].shape == (3,)
    gallery = images.load_png(out / "round_02" / "gallery.png")
    assert gallery.shape[-1] == 3


def test_fooling_runs_in_one_call_equal_the_runs_one_by_one():
    """evolve_fooling batches its runs (evolve.run_many_states): each run, its medians at every
    host call and its elites' images are those of evolve.init + evolve.run alone, bit for bit."""
    from jaxfool import classifiers
    from jaxfool.search import map_elites as evolve

    clf, params = classifiers.load_classifier("lenet")
    cfg = evolve.EvolutionConfig(
        DirectEncoding(image_shape=(28, 28, 1)), clf, tuple(range(10)), 40, 40
    )
    key = jax.random.key(5)
    got = retrain.evolve_fooling(cfg, params, key, 3, 9, 4)
    assert got.generations.tolist() == [0, 4, 8, 9] and got.medians.shape == (4, 3)
    for r in range(3):
        init_key, loop_key = jax.random.split(jax.random.fold_in(key, r))
        state = evolve.init(cfg, params, init_key)
        medians = [retrain_report.median_confidence(state.archive.log_prob)]
        for n in (4, 4, 1):
            state = evolve.run(cfg, params, state, loop_key, n)
            medians.append(retrain_report.median_confidence(state.archive.log_prob))
        assert got.medians[:, r].tolist() == medians
        np.testing.assert_array_equal(got.log_prob[r], np.asarray(state.archive.log_prob))
        expected = np.asarray(cfg.encoding.express(state.archive.genomes))
        np.testing.assert_array_equal(got.images[r], expected)


# --- probes and resuming ------------------------------------------------------------------------


def _without_seconds(rows):
    drop = ("train_seconds", "evolution_seconds")
    return [
        {k: _without_seconds([v])[0] if isinstance(v, dict) else v
         for k, v in r.items() if k not in drop}
        for r in rows
    ]  # fmt: skip


@pytest.fixture(scope="module")
def small_loop(mnist):
    """Two retraining rounds (DNN_1..DNN_3), tiny, with a probe emitter, and everything the
    callbacks saw."""
    (x, y), (xt, yt) = mnist
    task = retrain_tasks.mnist_task(x, y, xt, yt, steps=30)
    dnn1 = load_params(MODELS["lenet"].default_weights)[0]["params"]
    config = retrain.RetrainConfig(
        iterations=2, runs_per_iteration=2, holdout_runs=1, population=10, generations=4,
        log_every=2, probe_emitter="isoline", probe_runs=1,
    )  # fmt: skip
    seen = {"rounds": {}, "trained": {}}

    def on_round(i, params, rnd, row, probe):
        seen["rounds"][i] = (rnd, probe)

    def on_trained(i, params, fields):
        seen["trained"][i] = (params, fields)

    rows = retrain.retrain(task, DirectEncoding(), config, dnn1, jax.random.key(3),
                           on_round=on_round, on_trained=on_trained)  # fmt: skip
    return task, config, dnn1, rows, seen


def test_probe_runs_are_measured_not_trained_on(small_loop):
    task, config, dnn1, rows, seen = small_loop
    assert [r["probe"]["emitter"] for r in rows] == ["isoline"] * 3
    for i, row in enumerate(rows, 1):
        rnd, probe = seen["rounds"][i]
        assert probe.images.shape == (1, 10, 28, 28, 1)
        p = np.exp(probe.log_prob.astype(np.float64))
        assert row["probe"]["median_confidence"] == pytest.approx(float(np.median(p)))
        assert not np.array_equal(probe.images[0], rnd.images[0])  # its own key
    # DNN_{i+1} is trained on round i's trained-on runs only: 1 run x 10 images per round
    assert [r.get("trained_fooling_images") for r in rows] == [None, 10, 20]
    # the previous probe's images, as DNN_i classifies them
    dnn2 = seen["trained"][2][0]
    prev = seen["rounds"][1][1].images.reshape(-1, 28, 28, 1)
    assert rows[1]["probe"]["rejects_previous"] == retrain.rejection_rate(task, dnn2, prev)
    assert "rejects_previous" not in rows[0]["probe"]
    # the probe changes nothing else: the same loop without it has the same rows and images
    plain = retrain.RetrainConfig(**{**config.__dict__, "probe_emitter": ""})
    alone = retrain.retrain(task, DirectEncoding(), plain, dnn1, jax.random.key(3))
    strip = [{k: v for k, v in r.items() if k != "probe"} for r in _without_seconds(rows)]
    assert _without_seconds(alone) == strip


@pytest.mark.parametrize("done, trained", [(1, False), (1, True), (2, False)])
def test_resumed_loop_equals_the_uninterrupted_loop(small_loop, done, trained):
    """Stopped after `done` rounds (with DNN_{done+1} trained or not), the loop goes on to the
    same rows, images and networks, bit for bit."""
    task, config, dnn1, rows, seen = small_loop
    rounds = [seen["rounds"][i] for i in range(1, done + 1)]
    resume = retrain.Resume(
        rows=rows[:done],
        images=[r.images for r, _ in rounds],
        probe_images=[p.images for _, p in rounds],
        next_network=seen["trained"][done + 1] if trained else None,
    )
    again = {"rounds": {}, "trained": {}}
    got = retrain.retrain(
        task, DirectEncoding(), config, dnn1, jax.random.key(3), resume=resume,
        on_round=lambda i, params, rnd, row, probe: again["rounds"].__setitem__(i, (rnd, probe)),
        on_trained=lambda i, params, fields: again["trained"].__setitem__(i, params),
    )  # fmt: skip
    assert _without_seconds(got) == _without_seconds(rows)
    assert sorted(again["rounds"]) == list(range(done + 1, 4))
    for i, (rnd, probe) in again["rounds"].items():
        np.testing.assert_array_equal(rnd.images, seen["rounds"][i][0].images)
        np.testing.assert_array_equal(probe.images, seen["rounds"][i][1].images)
    for i, params in again["trained"].items():
        want = jax.tree.leaves(seen["trained"][i][0])
        for a, b in zip(jax.tree.leaves(params), want, strict=True):
            np.testing.assert_array_equal(a, b)
    assert (done + 1 in again["trained"]) == (not trained)


def test_cli_resume_goes_on_to_more_iterations(tmp_path):
    """--iterations=0, then --resume with --iterations=1: the files of a run with
    --iterations=1; settings other than --iterations cannot change on resume."""
    small = ["--runs_per_iteration=2", "--holdout_runs=1", "--population=10",
             "--generations=3", "--log_every=3", "--train_steps=20"]  # fmt: skip
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run(f"--out={whole}", "--iterations=1", *small).returncode == 0
    assert run(f"--out={part}", "--iterations=0", *small).returncode == 0
    res = run(f"--resume={part}", "--iterations=1", "--generations=3")  # same value: fine
    assert res.returncode == 0, res.stderr
    assert "1 networks done" in res.stdout
    a = json.loads((whole / "retrain.json").read_text())
    b = json.loads((part / "retrain.json").read_text())
    assert _without_seconds(a["rows"]) == _without_seconds(b["rows"])
    assert b["config"]["flags"]["iterations"] == 1 and len(b["config"]["resumed"]) == 1
    for name in ("round_01/fooling.npz", "round_02/fooling.npz", "dnn_02.npz"):
        x, y = np.load(whole / name), np.load(part / name)
        for k in x.files:
            if k != "__meta__":
                np.testing.assert_array_equal(x[k], y[k], err_msg=name)
    manifest = json.loads((part / "manifest.json").read_text())["files"]
    assert "round_02/fooling.npz" in manifest and "dnn_02.npz" in manifest
    before = (part / "retrain.json").read_bytes()
    for args, flag in (
        (["--generations=5"], "--generations"),
        (["--overwrite"], "--overwrite"),
        ([f"--out={whole}"], "--out"),
    ):
        res = run(f"--resume={part}", "--iterations=2", *args)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert flag in res.stderr
    (part / "round_02" / "fooling.npz").write_bytes(b"garbage")
    res = run(f"--resume={part}", "--iterations=2")
    assert res.returncode == 2 and "round_02/fooling.npz" in res.stderr, res.stderr
    assert (part / "retrain.json").read_bytes() == before
