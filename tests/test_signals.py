"""Ctrl-C or SIGTERM at any moment of fool.py, start-up and compilation included: one line, no
traceback, no crash, and either nothing left behind or a run that resumes."""

import json
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO

FOOL = [sys.executable, str(REPO / "experiments" / "fool.py")]
RUN = ["--encoding=direct", "--population=20", "--generations=30", "--log_every=10"]


def interrupt(out, sig, delay):
    proc = subprocess.Popen(
        FOOL + RUN + [f"--out={out}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(delay)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,delay",
    [(signal.SIGINT, 0.3), (signal.SIGINT, 1.5), (signal.SIGTERM, 0.8), (signal.SIGINT, 3.0),
     (signal.SIGTERM, 4.0), (signal.SIGINT, 6.0)],
)  # fmt: skip
def test_signal_at_start_up_is_one_line_and_leaves_a_clean_state(tmp_path, sig, delay):
    """Defect: a KeyboardInterrupt traceback, a segfault (rc 139), and a config.json that
    blocked the re-run."""
    out = tmp_path / "run"
    code, stdout, stderr = interrupt(out, sig, delay)
    assert "Traceback" not in stderr and code != -signal.SIGSEGV, stderr
    if code == 0:  # the signal came after start-up: outputs written, resumable
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "completed" or summary["status"].startswith("interrupted")
        res = subprocess.run(FOOL + [f"--resume={out}"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    else:
        assert code == 128 + sig, (code, stderr)
        assert len(stderr.strip().splitlines()) == 1 and "during start-up" in stderr, stderr
        assert not out.exists()
        res = subprocess.run(FOOL + RUN + [f"--out={out}"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr  # the same --out is free: nothing blocks it
