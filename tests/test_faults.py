"""When the machine, not the user, says no: out of memory, a full disk, corrupt genome files,
a resume below the completed count. Each is one line and a documented exit code, nothing is
lost, and `--resume` finishes what a fault interrupted."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxfool import runs
from jaxfool.base import fileio, npz
from jaxfool.base.errors import NothingToDo, OutOfMemory, WriteFailed
from jaxfool.runs import LoopConfig, RunConfig

from .conftest import REPO

SCRIPTS = REPO / "experiments"
CONFIG = RunConfig(encoding="direct", population=20, seed=3)
VOLATILE = ("wall_seconds", "peak_host_rss_mib", "peak_device_mib")


def quiet(msg):
    del msg


def script(name: str, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def run_to(out: Path, generations: int = 6, resume: bool = False) -> dict:
    loop = LoopConfig(out=str(out), generations=generations, log_every=2, checkpoint_every=2)
    config = CONFIG
    if resume:
        config, loop, _ = runs.store.resumed_configs(out, asdict(CONFIG), loop, {"generations"})
    return runs.drive(runs.start(config, loop, resume, log=quiet), resuming=resume)


def comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "whole"
    return comparable(run_to(out)), out


def failing_write(monkeypatch, target: str, nth: int = 1):
    """Every write of a file whose path ends with `target` fails as on a full disk from its
    `nth` write on."""
    real = fileio.atomic_write
    count = {"n": 0}

    def atomic_write(path, write):
        if str(path).endswith(target):
            count["n"] += 1
            if count["n"] >= nth:
                raise WriteFailed(errno.ENOSPC, f"no space left on device writing {path}")
        return real(path, write)

    monkeypatch.setattr(fileio, "atomic_write", atomic_write)
    return count


@pytest.mark.parametrize(
    "target, nth",
    [
        ("metrics.jsonl", 2),  # the second chunk's row
        ("progress.png", 1),
        ("checkpoint/state.npz", 2),  # the second checkpoint (the first is then intact)
        ("summary.json", 1),
        ("classes.csv", 1),
        ("gallery.png", 1),
        (".png", 4),  # an elite's image (the third PNG written at the end)
        ("_5.npz", 1),  # an elite's genome
    ],
)
def test_a_failed_write_anywhere_leaves_a_run_that_resume_completes(
    uninterrupted, tmp_path, monkeypatch, target, nth
):
    expected, _ = uninterrupted
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        failing_write(m, target, nth)
        with pytest.raises(WriteFailed, match=f"no space left on device writing .*{target}"):
            run_to(out)
    assert not list(out.rglob("*.tmp")), "a half-written file was left"
    summary = run_to(out, resume=True)  # space freed: --resume finishes the run
    assert comparable(summary) == expected
    assert comparable(json.loads((out / "summary.json").read_text())) == expected


def test_a_failed_config_write_leaves_nothing_and_a_rerun_is_the_same(
    uninterrupted, tmp_path, monkeypatch
):
    expected, _ = uninterrupted
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        failing_write(m, "config.json")
        with pytest.raises(WriteFailed):
            run_to(out)
    assert not out.exists()
    assert comparable(run_to(out)) == expected


def test_without_checkpoints_a_failed_write_says_start_again(tmp_path, monkeypatch):
    """--checkpoint_every=0 (the default) checkpoints only at the end: nothing to resume."""
    failing_write(monkeypatch, "metrics.jsonl")
    loop = LoopConfig(out=str(tmp_path / "run"), generations=4, log_every=2)
    with pytest.raises(WriteFailed, match="no checkpoint was written: start again"):
        runs.drive(runs.start(CONFIG, loop, log=quiet))


def test_a_full_file_system_is_one_named_error_and_the_old_file_stays(tmp_path, monkeypatch):
    """The real error path: the operating system's ENOSPC (from fsync, where a full disk or a
    quota shows up) becomes WriteFailed naming the file, and the previous file is intact."""
    path = tmp_path / "summary.json"
    fileio.write_text(path, "old")

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    with pytest.raises(WriteFailed) as e:
        fileio.write_text(path, "new" * 1000)
    assert str(e.value) == f"no space left on device writing {path}"
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError)
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["summary.json"]


@pytest.mark.slow
def test_a_full_disk_in_the_script_is_one_line_exit_4_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    wrap = f"""
import errno, runpy, sys
from jaxfool.base import errors, fileio
real = fileio.atomic_write
def atomic_write(path, write):
    if str(path).endswith("summary.json"):
        raise errors.WriteFailed(errno.ENOSPC, f"no space left on device writing {{path}}")
    return real(path, write)
fileio.atomic_write = atomic_write
sys.argv = [{str(SCRIPTS / "fool.py")!r}, *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
    args = [f"--out={out}", "--encoding=direct", "--population=20", "--generations=4"]
    proc = subprocess.run([sys.executable, "-c", wrap, *args], capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("fool.py: error: no space left on device writing") and str(out) in line
    assert "the checkpoint at generation 4 is intact" in line
    done = script("fool.py", f"--resume={out}", "--generations=4")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["generations_completed"] == 4


def test_a_population_beyond_memory_is_refused_before_it_starts(tmp_path):
    out = tmp_path / "run"
    proc = script("fool.py", "--population=2000000000", "--generations=1", f"--out={out}")
    assert proc.returncode == 4, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "needs ~" in line and "available; lower --population" in line
    assert not out.exists()


def test_out_of_memory_mid_run_names_the_setting_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    real = runs.loop.chunks

    def chunks(*args, **kw):
        it = real(*args, **kw)
        yield next(it)  # generation 2, checkpointed
        yield next(it)  # generation 4, checkpointed
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 1 bytes")

    monkeypatch.setattr(runs.loop, "chunks", chunks)
    out = tmp_path / "run"
    with pytest.raises(OutOfMemory) as e:
        run_to(out)
    text = str(e.value)
    assert "out of memory at generation 4: lower --eval_chunk" in text and "--population" in text
    assert "the checkpoint at generation 4 is intact" in text
    assert runs.store.checkpoint_generation(out) == 4


def test_a_resume_below_the_completed_count_touches_nothing(uninterrupted):
    _, out = uninterrupted
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    for generations in (2, 6):  # below, and at it with the outputs written
        with pytest.raises(NothingToDo, match="already at generation 6"):
            run_to(out, generations, resume=True)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    assert after == before
    proc = script("fool.py", f"--resume={out}", "--generations=5")
    assert proc.returncode == 0 and "already at generation 6" in proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "damage, array",
    [
        (lambda t: {**t, "genome/act": t["genome/act"][:10]}, "genome/act"),
        (lambda t: {**t, "genome/weight": t["genome/weight"].astype(np.float64)}, "genome/weight"),
        (lambda t: {k: v for k, v in t.items() if k != "genome/src"}, "genome/src"),
    ],
)
def test_a_corrupt_genome_file_names_the_file_and_the_array(tmp_path, damage, array):
    run = tmp_path / "cppn"
    runs.drive(runs.start(RunConfig(population=20), LoopConfig(out=str(run), generations=1),
                          log=quiet))  # fmt: skip
    genome = sorted((run / "elites").glob("*.npz"))[0]
    tree, meta = npz.load_params(genome)
    npz.save_params(genome, npz.unflatten(damage(npz.flatten(tree))), meta)
    with pytest.raises(npz.WeightsFileError) as e:
        runs.store.load_genome(genome)
    assert str(genome) in str(e.value) and array in str(e.value)
    proc = script("render.py", str(genome), f"--out={tmp_path / 'png'}")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert array in proc.stderr and genome.name in proc.stderr
    proc = script("rescore.py", str(run))
    assert proc.returncode == 2 and array in proc.stderr, proc.stderr


@pytest.fixture
def not_regular(tmp_path):
    """Paths that exist but are not regular files (reading /dev/zero or a FIFO never ends)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return {"a character device": "/dev/zero", "a FIFO": str(fifo), "a directory": str(tmp_path)}


def test_paths_that_are_not_regular_files_are_named_as_such(not_regular):
    from jaxfool import classifiers
    from jaxfool.base import images

    for kind, path in not_regular.items():
        with pytest.raises(npz.WeightsFileError, match=f"not a regular file \\({kind}\\)"):
            classifiers.load_classifier("lenet", path)
        with pytest.raises(npz.WeightsFileError, match=f"not a regular file \\({kind}\\)"):
            npz.load_params(path)
        with pytest.raises(images.ImageFileError, match=f"not a regular file \\({kind}\\)"):
            images.load_png(path)
        with pytest.raises(ValueError, match=f"not a regular file \\({kind}\\)"):
            classifiers.load_classifier("caffenet", "random", path)  # the mean image


def test_the_scripts_say_not_a_regular_file(not_regular):
    fifo = not_regular["a FIFO"]
    for name, args in [
        ("fool.py", [f"--weights={fifo}", "--generations=1"]),
        ("classify.py", ["--model=lenet", "/dev/zero"]),
        ("render.py", [fifo]),
    ]:
        proc = script(name, *args)
        assert proc.returncode == 2, (name, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert "not a regular file" in line, (name, line)
