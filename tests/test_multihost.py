"""Two processes on this machine (jax.distributed over localhost, CPU collectives) evolve the
same archive as one process, and only process 0 writes or prints."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from jaxfool import runs

from .conftest import REPO

FOOL = [sys.executable, str(REPO / "experiments" / "fool.py")]
ARGS = ["--encoding=direct", "--population=10", "--generations=4", "--log_every=2", "--seed=5"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_and_only_process_zero_writes(tmp_path):
    out = tmp_path / "multi"
    coordinator = f"--coordinator_address=localhost:{free_port()}"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [
        subprocess.Popen(
            FOOL + ARGS + [coordinator, "--num_processes=2", f"--process_id={i}", f"--out={out}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert "gen      4/4" in results[0][0] and "done:" in results[0][0]
    # process 1 prints nothing of its own (the collectives library announces itself)
    assert [x for x in results[1][0].splitlines() if not x.startswith("[Gloo]")] == []
    single = tmp_path / "single"
    res = subprocess.run(FOOL + ARGS + [f"--out={single}"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    a = json.loads((out / "summary.json").read_text())
    b = json.loads((single / "summary.json").read_text())
    assert a["devices"] == 2 and a["processes"] == 2 and b["devices"] == 1
    assert [c["log_prob"] for c in a["classes"]] == [c["log_prob"] for c in b["classes"]]
    for ca, cb in zip(a["classes"], b["classes"], strict=True):
        ga = runs.store.load_genome(out / ca["genome"])[1]
        gb = runs.store.load_genome(single / cb["genome"])[1]
        np.testing.assert_array_equal(ga, gb)
