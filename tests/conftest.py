"""Shared test fixtures: paths to the repo, the shared data folder, and small classifiers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PAPER_LENET = SHARED_DATA / "paper-lenet" / "lenet_iter_10000"
PAPER_MEAN = SHARED_DATA / "paper-lenet" / "mnist_mean.binaryproto"


def require(path: Path) -> Path:
    """Skips the test, naming the file, when an optional shared data file is absent."""
    if not path.exists():
        pytest.skip(f"needs {path} (shared data, not shipped with the repo)")
    return path


@pytest.fixture(scope="session")
def lenet():
    """The shipped LeNet classifier and its params."""
    from jaxfool import classifiers

    return classifiers.load_classifier("lenet")


@pytest.fixture(scope="session", autouse=True)
def caches_in_tmp(tmp_path_factory):
    """The test run's caches (converted weights, compiled programs; subprocesses too) go to
    one temporary folder: shared by every test of the run, fresh for every run, so a cold
    machine is what each run starts from."""
    import os

    from jaxfool.base import compile_cache

    # under pytest-xdist each worker has its own basetemp inside the run's folder: the
    # workers share the run's one cache there (the cache tolerates concurrent writers)
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    cache = root / "jaxfool-cache"
    cache.mkdir(exist_ok=True)
    old = os.environ.get("JAXFOOL_CACHE")
    os.environ["JAXFOOL_CACHE"] = str(cache)
    compile_cache.enable()
    yield
    if old is None:
        os.environ.pop("JAXFOOL_CACHE", None)
    else:
        os.environ["JAXFOOL_CACHE"] = old


# The fast tier (`pytest -m "not slow"`) leaves out these end-to-end tests: each took over
# ~8 s on the shared 2-core CPU (whole runs, multi-process and multi-device set-ups, training
# loops). Every library module keeps faster tests in the tier. Files whose every test is slow
# mark themselves (`pytestmark`) or their tests (`@pytest.mark.slow`).
SLOW_TESTS = {
    "test_retrain.py": ("test_retrained_net_rejects", "test_evolution_fitness_is_a_real",
                        "test_outputs_table_and_plot", "test_cli_mnist_round_zero",
                        "test_cli_folder_stand_in", "test_probe_runs_are_measured",
                        "test_resumed_loop_equals", "test_cli_resume_goes_on"),
    "test_torchvision_nets.py": ("test_port_matches", "test_fool_runs", "test_classify_prints",
                                 "test_adding_a_torch_layout"),
    "test_imagenet_fool.py": ("test_imagenet_direct_run", "test_random_weights_build_every",
                              "test_center_crop_fitness"),
    "test_sharding.py": ("test_four_devices_equal_one_device",),
    "test_benchmark.py": ("test_generation_line_has_every_field", "test_insert_line"),
    "test_train.py": ("test_short_training_learns",),
    "test_transfer.py": ("test_cli_diagonal", "test_cli_refuses_to_overwrite",
                         "test_cli_bad_flags"),
    "test_fool_cli.py": ("test_overwrite_replaces_only", "test_default_run_is_cppn",
                         "test_same_seed_gives", "test_direct_run_and_fixed",
                         "test_resume_keeps_log_every"),
    "test_multihost.py": ("test_",),
    "test_resume.py": ("test_",),
    "test_cppn_render.py": ("test_batched_and_sequential_strategies_agree",),
    "test_classify.py": ("test_caffenet_fitness_is_the_mean_softmax",),
    "test_emitters.py": ("test_cppn_surrogate", "test_isoline_moves_cppn",
                         "test_cppn_gradient_matches", "test_a_mixed_generation",
                         "test_original_rates_are_runtime_params[cppn]"),
    "test_gradient_ascent.py": ("test_cli_runs_your_own_model", "test_torch_layout_nets_and"),
    "test_ensemble.py": ("test_fool_cli_refuses",),
}  # fmt: skip


MEASURED_SLOW = {
    line.strip()
    for line in (Path(__file__).parent / "slow_tests.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


# Parametrized command-line tests (a Python + JAX start-up each, ~2 s): the fast tier keeps
# the first case of each; the full suite runs them all.
CLI_CASES_FAST = 1
CLI_TESTS = (
    "test_bad_flags_are_one_line_errors", "test_bad_flags_give_one_line_errors",
    "test_cli_bad_flag_is_a_one_line_error", "test_bad_flag_is_one_line_and_exit_2",
    "test_cli_bad_flags_give_one_line_errors", "test_script_rejects_bad_flags",
    "test_unparsable_flag_is_one_line_and_exit_2",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    del config
    seen: dict[str, int] = {}
    for item in items:
        prefixes = SLOW_TESTS.get(item.path.name, ())
        node = f"{item.path.name}::{item.name}"
        family = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        cli_case = getattr(item, "originalname", "") in CLI_TESTS and "[" in item.name
        if cli_case:
            seen[family] = seen.get(family, 0) + 1
        if (
            item.name.startswith(prefixes)
            or node in MEASURED_SLOW
            or (cli_case and seen[family] > CLI_CASES_FAST)
        ):
            item.add_marker(pytest.mark.slow)
