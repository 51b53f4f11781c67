"""The NumPy baseline (jaxfool.studies.numpy_baseline) computes what jaxfool computes;
experiments/numpy_baseline.py as a script: a short run prints progress and a JSON line, bad
flags are one line and exit 2; the benchmark uses the library's baseline without a flag clash."""

from __future__ import annotations

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.studies import numpy_baseline

from . import script_runner
from .conftest import REPO

SCRIPT = [sys.executable, str(REPO / "experiments" / "numpy_baseline.py")]


def run(*args: str) -> subprocess.CompletedProcess:
    return script_runner.run(
        SCRIPT + list(args), capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_short_run_prints_progress_and_a_json_line():
    res = run("--generations=3", "--population=20", "--seed=1", "--log_every=1")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines if line.startswith("generation ")] == [
        "1/3",
        "2/3",
        "3/3",
    ]
    assert "gens/s" in lines[-2] and "median" in lines[-2]
    result = json.loads(lines[-1])
    assert (result["generations"], result["population"], result["seed"]) == (3, 20, 1)
    assert result["evaluations"] == 20 + 3 * 20
    assert 0.0 <= result["min_confidence"] <= result["median_confidence"] <= 1.0
    assert len(result["confidence"]) == 10
    assert all(0.0 <= c <= 1.0 for c in result["confidence"])


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--population=3", "--population=3: must be even"),
        ("--generations=-1", "--generations=-1: must be >= 0"),
        ("--generations=x", "--generations=x"),
        ("--bogus=1", "bogus"),
    ],
)
def test_bad_flag_is_one_line_and_exit_2(flag, message):
    res = run(flag)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpy_baseline.py: error: "), res.stderr
    assert message in lines[0]


def test_importable_beside_benchmark_flags():
    """The library's baseline defines no flags, so benchmark.py's --population etc. do not
    clash, and benchmark.py imports no other script."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import benchmark; "
        "from jaxfool.studies import numpy_baseline as nb; "
        "assert 'numpy_baseline' not in sys.modules; "
        "from absl import flags; flags.FLAGS(['x', '--population=8']); "
        "assert flags.FLAGS.population == 8 and 'log_every' not in flags.FLAGS; "
        "assert callable(nb.init) and callable(nb.generation) and callable(nb.numpy_lenet_params)"
    )
    res = script_runner.run(
        [sys.executable, "-c", code, str(REPO / "experiments")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_numpy_lenet_matches_jaxfool(lenet):
    clf, params = lenet
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    expected = np.asarray(clf.logits(params, jnp.asarray(images)))
    got = numpy_baseline.lenet_logits(numpy_baseline.numpy_lenet_params(params), images)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-5)


def test_numpy_baseline_evolves(lenet):
    _, params = lenet
    start, end = numpy_baseline.run(params, population=20, generations=5, seed=1)
    assert np.all(end.log_prob >= start.log_prob) and np.any(end.log_prob > start.log_prob)
    assert np.isfinite(end.log_prob).all() and np.all(end.log_prob <= 0)
    assert end.genomes.min() >= 0 and end.genomes.max() <= 1


def test_numpy_operators_stay_in_bounds():
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 28, 28, 1), dtype=np.float32)
    c1, c2 = numpy_baseline.sbx(rng, a, b)
    assert c1.dtype == np.float32 and 0 <= c1.min() and c2.max() <= 1
    assert np.mean((c1 != a) & (c1 != b)) > 0.5  # genes are crossed, not copied
    m = numpy_baseline.polynomial_mutation(rng, a)
    changed = np.mean(m != a)
    assert 0.05 < changed < 0.15 and 0 <= m.min() and m.max() <= 1
