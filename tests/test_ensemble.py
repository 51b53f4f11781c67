"""Ensembles: the fitness is the mean (or min) of the members' log-probabilities, evolution
runs against it through fool.py's loop, and members that do not fit are one-line errors."""

from __future__ import annotations

import sys

import jax
import numpy as np
import pytest

from jaxfool import classifiers, runs
from jaxfool.base.errors import ConfigError
from jaxfool.classifiers import scoring
from jaxfool.runs import RunConfig
from jaxfool.search import map_elites as evolve

from . import script_runner
from .conftest import REPO


@pytest.fixture(scope="module")
def two_lenets(tmp_path_factory):
    """The shipped LeNet and a copy with perturbed weights (a different network)."""
    from jaxfool.base.npz import load_params, save_params

    variables, _ = load_params(classifiers.MODELS["lenet"].default_weights)
    noise = jax.tree.map(
        lambda a: a + 0.05 * np.random.default_rng(0).standard_normal(a.shape).astype(a.dtype),
        variables,
    )
    path = tmp_path_factory.mktemp("nets") / "lenet_b.npz"
    save_params(path, noise)
    return path


@pytest.mark.parametrize("fitness", ["mean", "min"])
def test_fitness_is_the_members_log_probabilities_combined(two_lenets, fitness):
    a = classifiers.load_classifier("lenet")
    b = classifiers.load_classifier("lenet", two_lenets)
    clf, params = classifiers.ensemble([a, b], fitness)
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    got = np.asarray(scoring.score(clf.logits, params, images))
    each = np.stack([np.asarray(scoring.score(c.logits, p, images)) for c, p in (a, b)])
    want = each.mean(0) if fitness == "mean" else each.min(0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert clf.num_classes == 10 and clf.image_shape == (28, 28, 1)
    # chunked scoring (lax.map) gives the same
    np.testing.assert_array_equal(np.asarray(scoring.score(clf.logits, params, images, 3)), got)


def test_members_must_agree():
    lenet = classifiers.load_classifier("lenet")
    lite = classifiers.load_classifier("resnet18", "random")
    with pytest.raises(ValueError, match=r"resnet18 takes \(256, 256, 3\) images"):
        classifiers.ensemble([lenet, lite])
    with pytest.raises(ValueError, match="at least two"):
        classifiers.ensemble([lenet])
    with pytest.raises(ValueError, match="fitness 'max'"):
        classifiers.ensemble([lenet, lenet], "max")


@pytest.mark.parametrize(
    "changes, field",
    [({"models": "lenet"}, "models"), ({"models": "lenet,nonet"}, "models"),
     ({"models": "lenet,lenet:a:b:c"}, "models"),
     ({"models": "lenet,lenet", "ensemble_fitness": "max"}, "ensemble_fitness")],
)  # fmt: skip
def test_ensemble_settings_are_checked_once(changes, field):
    with pytest.raises(ConfigError) as e:
        RunConfig(**changes)
    assert e.value.field == field


def test_an_ensemble_run_evolves_against_both(two_lenets, tmp_path):
    """The library loop with --models: the archive's log-probabilities are the ensemble's
    fitness of its elites, and summary.json says "ensemble"."""
    config = RunConfig(models=f"lenet,lenet:{two_lenets}", encoding="direct", population=20)
    loop = runs.LoopConfig(out=str(tmp_path / "run"), generations=4, log_every=2)
    run = runs.start(config, loop, log=lambda _: None)
    summary = runs.drive(run)
    assert summary["model"] == "ensemble" and summary["generations_completed"] == 4
    images = run.evolution.encoding.express(run.state.archive.genomes)
    fitness = scoring.score(run.evolution.classifier.logits, run.params, images)
    own = np.asarray(fitness)[np.arange(10), np.arange(10)]
    np.testing.assert_allclose(np.asarray(run.state.archive.log_prob), own, rtol=1e-5, atol=1e-6)
    assert isinstance(run.evolution, evolve.EvolutionConfig)
    # transfer.py tells ensembles apart by their members and fitness
    from jaxfool.studies import transfer

    source = transfer.load_run(tmp_path / "run").source
    assert source.name == "ensemble(mean: lenet + lenet:lenet_b.npz)"


def test_fool_cli_refuses_model_with_models(tmp_path):
    cmd = [sys.executable, str(REPO / "experiments" / "fool.py"), "--models=lenet,lenet",
           "--model=lenet", f"--out={tmp_path / 'r'}"]  # fmt: skip
    res = script_runner.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--model" in res.stderr and not (tmp_path / "r").exists()
    cmd[2:4] = ["--models=lenet,efficientnet_lite0:/no/such.pth"]
    res = script_runner.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "/no/such.pth" in res.stderr, res.stderr
