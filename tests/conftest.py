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
def weights_cache_in_tmp(tmp_path_factory):
    """Converted-weights caches of the test run (subprocesses too) go to a temporary folder."""
    import os

    old = os.environ.get("JAXFOOL_CACHE")
    os.environ["JAXFOOL_CACHE"] = str(tmp_path_factory.mktemp("jaxfool-cache"))
    yield
    if old is None:
        os.environ.pop("JAXFOOL_CACHE", None)
    else:
        os.environ["JAXFOOL_CACHE"] = old
