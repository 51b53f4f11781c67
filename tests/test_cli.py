"""Every experiment script: bad flags end it with one line `NAME.py: error: ...` and code 2."""

import subprocess
import sys

import pytest

from .conftest import REPO

SCRIPTS = ["fool", "gradient_ascent", "transfer", "retrain", "train_lenet", "benchmark", "plot",
           "classify", "render", "numpy_baseline"]  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS)
def test_unparsable_flag_is_one_line_and_exit_2(script):
    res = subprocess.run(
        [sys.executable, str(REPO / "experiments" / f"{script}.py"), "--no_such_flag_xyz=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{script}.py: error: "), res.stderr
    assert "no_such_flag_xyz" in lines[0]
