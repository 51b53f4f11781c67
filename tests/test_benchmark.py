"""experiments/benchmark.py: the JSON lines carry every field with sane values, flags are
checked, and the NumPy baseline computes the same thing as jaxfool."""

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import REPO

BENCHMARK = [sys.executable, str(REPO / "experiments" / "benchmark.py")]
sys.path.insert(0, str(REPO / "experiments"))
import numpy_baseline  # noqa: E402

ENVIRONMENT = ("platform", "device_kind", "device_count", "jax_version", "cpu_count")
GENERATION_FIELDS = (
    "population", "image_shape", "eval_chunk", "init_s", "compile_s", "generation_s",
    "generations_per_s", "evaluations_per_s", "classifier_only_s",
    "classifier_only_generations_per_s", "overhead_ratio", "stage_s", "flops_per_image",
    "device_flops_per_s", "limit_generation_s", "fraction_of_limit",
    "original_evaluations_per_s", "speedup_over_original", "numpy_generations_per_s",
    "speedup_over_numpy", "peak_host_rss_mib", "peak_device_mib", "overhead_ratio_cpu",
    "cpu_cores_used", "load_avg_1m", "isolated",
)  # fmt: skip


def benchmark(*args):
    return subprocess.run(BENCHMARK + list(args), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def smoke_rows():
    res = benchmark("--suite=smoke")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    return {row["kind"]: row for row in rows}


def test_generation_line_has_every_field(smoke_rows):
    row = smoke_rows["generation"]
    for key in ENVIRONMENT + GENERATION_FIELDS:
        assert key in row, key
    assert row["platform"] == "cpu" and row["device_count"] >= 1
    assert row["population"] == 8 and row["image_shape"] == [28, 28, 1]
    assert row["generations_per_s"] == pytest.approx(1 / row["generation_s"], rel=1e-2)
    assert row["evaluations_per_s"] == pytest.approx(8 * row["generations_per_s"], rel=1e-2)
    assert row["overhead_ratio"] == pytest.approx(
        row["generation_s"] / row["classifier_only_s"], rel=1e-2
    )
    assert set(row["stage_s"]) == {"select_gather", "vary", "express", "insert", "classifier"}
    assert all(v > 0 for v in row["stage_s"].values())
    # LeNet: 2 x (conv1 20*24*24*25 + conv2 50*8*8*500 + ip1 800*500 + ip2 500*10) MACs
    assert row["flops_per_image"] == pytest.approx(4.59e6, rel=0.05)
    assert row["device_flops_per_s"] > 1e9
    assert row["limit_generation_s"] == pytest.approx(
        row["flops_per_image"] * 8 / row["device_flops_per_s"], rel=1e-2
    )
    assert 0 < row["fraction_of_limit"] < 2
    assert row["original_evaluations_per_s"] == pytest.approx(133.3, rel=1e-3)
    assert row["numpy_generations_per_s"] > 0 and row["speedup_over_numpy"] > 0
    before, after = row["numpy_median_log_prob"]
    assert after >= before
    assert row["peak_host_rss_mib"] > 100 and row["peak_device_mib"] is None
    assert row["compile_s"] >= 0 and row["init_s"] > 0


def test_insert_line(smoke_rows):
    row = smoke_rows["insert"]
    assert row["cells"] == 10 and row["children"] == 8
    assert row["insert_s"] > 0 and row["inserts_per_s"] == pytest.approx(1 / row["insert_s"], 0.01)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite=fast"], "--suite=fast"),
        (["--suite=custom", "--population=3"], "--population=3"),
        (["--population=x"], "--population"),  # absl's own parse error, kept to one line
    ],
)
def test_bad_flags_are_one_line_errors(args, message):
    res = benchmark(*args)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr
    assert res.stdout == ""


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
