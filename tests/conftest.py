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
