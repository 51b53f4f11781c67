"""experiments/numpy_baseline.py as a script: a short run prints progress and a JSON line, bad
flags are one line and exit 2; benchmark.py still imports it without a flag clash."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO

SCRIPT = [sys.executable, str(REPO / "experiments" / "numpy_baseline.py")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
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
    """Importing it defines no flags, so benchmark.py's --population etc. do not clash."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import benchmark, numpy_baseline as nb; "
        "from absl import flags; flags.FLAGS(['x', '--population=8']); "
        "assert flags.FLAGS.population == 8 and 'log_every' not in flags.FLAGS; "
        "assert callable(nb.init) and callable(nb.generation) and callable(nb.numpy_lenet_params)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "experiments")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
