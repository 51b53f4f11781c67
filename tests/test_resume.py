"""Exact resume: a run killed (SIGKILL) or interrupted (SIGINT) and resumed ends bit-identical to
an uninterrupted run with the same seed."""

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from jaxfool.base import npz

from . import script_runner
from .conftest import REPO

FOOL = [sys.executable, str(REPO / "experiments" / "fool.py")]
RUN = ["--encoding=direct", "--population=20", "--seed=5", "--log_every=3"]
TOTAL = 150


def final_state(out):
    tree, _ = npz.load_params(out / "checkpoint" / "state.npz")
    return npz.flatten(tree)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "whole"
    res = script_runner.run(
        FOOL + RUN + [f"--generations={TOTAL}", f"--out={out}"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    return out


def start_and_stop(out, sig):
    """Starts a long run that checkpoints every 3 generations and sends `sig` after the first
    checkpoint past generation 0 (that one is written during start-up)."""
    from jaxfool.runs import store

    proc = subprocess.Popen(
        FOOL + RUN + ["--generations=100000", "--checkpoint_every=3", f"--out={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not store.checkpoint_generation(out):  # None (no whole checkpoint yet) or 0
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


def assert_same_run(a, b):
    sa, sb = final_state(a), final_state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    ja = json.loads((a / "summary.json").read_text())
    jb = json.loads((b / "summary.json").read_text())
    assert jb["generations_completed"] == TOTAL
    assert [c["log_prob"] for c in ja["classes"]] == [c["log_prob"] for c in jb["classes"]]


def test_sigkill_between_checkpoints_then_resume_is_exact(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    code, _, _ = start_and_stop(out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    generation = int(final_state(out)["state/generation"])
    assert 0 < generation < TOTAL and generation % 3 == 0
    res = script_runner.run(
        FOOL + [f"--resume={out}", f"--generations={TOTAL}"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert f"resuming {out} at generation" in res.stdout
    assert_same_run(uninterrupted, out)
    gens = [json.loads(x)["generation"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert gens == sorted(set(gens)) and gens[-1] == TOTAL  # no line twice after the resume


def test_sigint_writes_outputs_and_exits_zero_then_resume_is_exact(uninterrupted, tmp_path):
    out = tmp_path / "interrupted"
    code, stdout, stderr = start_and_stop(out, signal.SIGINT)
    assert code == 0, stderr
    assert "interrupted by SIGINT" in stdout and "--resume=" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"].startswith("interrupted by SIGINT")
    assert summary["generations_completed"] == int(final_state(out)["state/generation"])
    res = script_runner.run(
        FOOL + [f"--resume={out}", f"--generations={TOTAL}"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert_same_run(uninterrupted, out)


# fool.py, with the checkpoint writer made to stop half way through its third checkpoint
# (generation 6; generations 0 and 3 are whole on disk): inside fileio.atomic_write, after half
# the bytes went to the temporary file and before the rename, it creates the file argv[1] and
# sleeps until killed
PAUSE_IN_CHECKPOINT_WRITE = textwrap.dedent(
    """
    import runpy, sys, time
    from pathlib import Path
    from jaxfool.base import fileio

    paused, script = Path(sys.argv[1]), sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, script.rsplit("/", 1)[0])
    atomic_write, writes = fileio.atomic_write, []

    class HalfThenPause:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            paused.write_text("in atomic_write")
            time.sleep(600)

    def pausing_atomic_write(path, write):
        path = Path(path)
        if path.name == "state.npz":
            writes.append(path)
            if len(writes) == 3:
                return atomic_write(path, lambda f: write(HalfThenPause(f)))
        return atomic_write(path, write)

    fileio.atomic_write = pausing_atomic_write
    runpy.run_path(script, run_name="__main__")
    """
)


def test_sigkill_inside_a_checkpoint_write_then_resume_is_exact(uninterrupted, tmp_path):
    """SIGKILL while checkpoint/state.npz is being written (half of it in the temporary file,
    not yet renamed): the checkpoint on disk is still the previous one, whole, and --resume
    goes on from it to the uninterrupted run's result; the half file is never read."""
    from jaxfool.runs import store

    out, paused = tmp_path / "killed", tmp_path / "paused"
    cmd = [sys.executable, "-c", PAUSE_IN_CHECKPOINT_WRITE, str(paused), FOOL[1], *RUN,
           f"--generations={TOTAL}", "--checkpoint_every=3", f"--out={out}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not paused.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the checkpoint write never paused: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    temps = [(t.name, t.stat().st_size) for t in (out / "checkpoint").glob(".state.npz.*.tmp")]
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert store.checkpoint_generation(out) == 3  # the one before, whole, under the real name
    assert len(temps) == 1 and temps[0][1] > 0, temps  # half a checkpoint, in the temporary file
    res = script_runner.run(
        FOOL + [f"--resume={out}", f"--generations={TOTAL}"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert f"resuming {out} at generation 3" in res.stdout
    assert_same_run(uninterrupted, out)
    gens = [json.loads(x)["generation"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert gens == sorted(set(gens)) and gens[-1] == TOTAL
    assert not list(out.rglob("*.tmp")), "the killed write's temporary file was left behind"


def test_resume_refuses_conflicting_settings_and_non_runs(uninterrupted, tmp_path):
    res = script_runner.run(
        FOOL + [f"--resume={uninterrupted}", "--seed=6"], capture_output=True, text=True
    )
    assert res.returncode == 2 and "--seed=6 conflicts" in res.stderr
    res = script_runner.run(FOOL + [f"--resume={tmp_path}"], capture_output=True, text=True)
    assert res.returncode == 2 and "not a run directory" in res.stderr
    other = f"--out={tmp_path / 'elsewhere'}"
    res = script_runner.run(
        FOOL + [f"--resume={uninterrupted}", other], capture_output=True, text=True
    )
    assert res.returncode == 2 and "resumes in place" in res.stderr


def test_resumed_settings_are_checked_with_the_runs_own_emitter(tmp_path):
    """--resume=DIR --emitter_params=... without --emitter: the params meet the saved run's
    emitter (here gradient_walk), not the flag's default (original): the same params resume,
    other ones are a conflict naming the flag, before anything is loaded."""
    from jaxfool.base.errors import ConfigError
    from jaxfool.runs import LoopConfig, RunConfig, store

    walk = RunConfig(emitter="gradient_walk", emitter_params="gradient_walk.steps=5")
    flags = {**dataclasses.asdict(walk), **dataclasses.asdict(LoopConfig(out=str(tmp_path)))}
    (tmp_path / "config.json").write_text(json.dumps({"flags": flags}))
    given_params = {**dataclasses.asdict(RunConfig()), "emitter_params": "gradient_walk.steps=5"}
    config, _, _ = store.resumed_configs(tmp_path, given_params, LoopConfig(), {"emitter_params"})
    assert config == walk
    other = {**given_params, "emitter_params": "gradient_walk.steps=6"}
    with pytest.raises(ConfigError, match="conflicts with the resumed run's"):
        store.resumed_configs(tmp_path, other, LoopConfig(), {"emitter_params"})
    res = script_runner.run(
        FOOL + [f"--resume={tmp_path}", "--emitter_params=gradient_walk.steps=6"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "--emitter_params=gradient_walk.steps=6 conflicts" in res.stderr, res.stderr


# --- every genome encoding and emitter: stopped by a signal, resumed, bit for bit ----------------

# (encoding, emitter, emitter settings): the direct + original case is the subprocess tests' above;
# the settings differ from the defaults, so a resume that lost them would show
SEARCHES = [
    ("cppn", "original", ""),
    ("direct", "isoline", "isoline.iso_sigma=0.02,isoline.line_sigma=0.2"),
    ("direct", "gradient", "gradient.step_min=0.01,gradient.step_max=0.1"),
]
SHORT = 6  # generations, 2 per chunk: the signal comes after the first chunk


def quiet(msg):
    del msg


def run_in_process(out, config, generations, stop=None, log=quiet, resume=False):
    """What fool.py does (a resumed run takes its settings from config.json), in this process."""
    from jaxfool import runs
    from jaxfool.runs import LoopConfig, store

    loop = LoopConfig(out=str(out), generations=generations, log_every=2)
    if resume:
        config, loop, _ = store.resumed_configs(
            out, dataclasses.asdict(type(config)()), loop, {"generations"}
        )
    run = runs.start(config, loop, resume, stop, log=log)
    return runs.drive(run, stop, resume)


@pytest.mark.parametrize(
    "encoding, emitter, settings", SEARCHES, ids=[f"{e}-{m}" for e, m, _ in SEARCHES]
)
def test_stopped_and_resumed_run_is_exact_for_every_encoding_and_emitter(
    tmp_path, encoding, emitter, settings
):
    """A run of each genome encoding and emitter, stopped by SIGINT after its first chunk (its
    own handler, as fool.py installs it) and resumed to the end, equals the run that was never
    stopped: every array of the final state, the scores and the metrics, bit for bit."""
    import os

    from jaxfool.base.signals import Stop
    from jaxfool.runs import RunConfig, store

    config = RunConfig(
        encoding=encoding, population=10, seed=11, emitter=emitter, emitter_params=settings
    )
    run_in_process(tmp_path / "whole", config, SHORT)

    stop = Stop()  # SIGINT is recorded, not raised, until uninstalled

    def interrupt_after_the_first_chunk(msg):
        if msg.startswith("gen ") and not stop:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = tmp_path / "stopped"
    try:
        summary = run_in_process(stopped, config, SHORT, stop, interrupt_after_the_first_chunk)
    finally:
        stop.uninstall()
    assert summary["status"] == "interrupted by SIGINT at generation 2", summary["status"]
    assert int(final_state(stopped)["state/generation"]) == 2
    summary = run_in_process(stopped, RunConfig(), SHORT, resume=True)
    assert summary["status"] == "completed" and summary["generations_completed"] == SHORT
    whole, resumed = final_state(tmp_path / "whole"), final_state(stopped)
    assert whole.keys() == resumed.keys()
    for k in whole:
        np.testing.assert_array_equal(resumed[k], whole[k], err_msg=k)
    kept = {"generation", "evaluations", "improved", "nan_scores"}  # not timings or memory
    kept |= set(store.archive_stats(np.zeros(10, np.float32)))
    rows = [
        [{k: v for k, v in json.loads(x).items() if k in kept}
         for x in (d / "metrics.jsonl").read_text().splitlines()]
        for d in (tmp_path / "whole", stopped)
    ]  # fmt: skip
    assert [r["generation"] for r in rows[1]] == [2, 4, 6] and rows[0] == rows[1]
    a, b = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "whole", stopped))
    assert a["classes"] == b["classes"]
