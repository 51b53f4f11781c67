"""The persistent compilation cache: on by default in every script and `runs.start`, the same
results with and without it, bounded in size, and never the cause of a failed run (a corrupt
entry, an unusable or full folder, two processes at once): at most one warning line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from jaxfool.base import compile_cache

from .conftest import REPO

FOOL = [sys.executable, str(REPO / "experiments" / "fool.py")]
ARGS = ["--encoding=direct", "--generations=3", "--log_every=3", "--population=20"]
# runs fool.py with the cache's writes failing with ENOSPC, as on a full disk
FULL_DISK = """
import errno, pathlib, runpy, sys
def full(write):
    def write_bytes(self, data):
        if self.name.endswith("-cache"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write(self, data)
    return write_bytes
pathlib.Path.write_bytes = full(pathlib.Path.write_bytes)
try:  # JAX writes through etils.epath where it is installed
    from etils.epath import gpath
    gpath.PosixGPath.write_bytes = full(gpath.PosixGPath.write_bytes)
except ImportError:
    pass
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def fool(out: Path, cache: Path | str, *extra: str, wrap: str | None = None):
    """fool.py --out=out with the cache folder `cache` ("off": no cache); `wrap`: Python code
    that runs the script (argv[1]) after patching something."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(compile_cache.SWITCH_ENV, None)
    if cache == "off":
        env[compile_cache.SWITCH_ENV] = "off"
    else:
        env[compile_cache.ROOT_ENV] = str(cache)
    cmd = FOOL if wrap is None else [sys.executable, "-c", wrap, FOOL[1]]
    return subprocess.run(
        [*cmd, f"--out={out}", *ARGS, *extra], env=env, capture_output=True, text=True, timeout=600
    )


def state_arrays(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoint" / "state.npz") as z:
        return {k: z[k] for k in z.files if not k.startswith("__")}


def assert_same_run(a: Path, b: Path) -> None:
    x, y = state_arrays(a), state_arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def warning_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if "warning" in ln.lower()]


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "xla").glob("*-cache"))


@pytest.mark.slow
def test_results_are_the_same_with_and_without_the_cache(tmp_path):
    cache = tmp_path / "cache"
    off = fool(tmp_path / "off", "off")
    cold = fool(tmp_path / "cold", cache)
    assert off.returncode == 0 and cold.returncode == 0, off.stderr + cold.stderr
    assert entries(cache), "the cold run wrote no cache entry"
    t = time.perf_counter()
    warm = fool(tmp_path / "warm", cache)
    warm_s = time.perf_counter() - t
    assert warm.returncode == 0, warm.stderr
    assert_same_run(tmp_path / "off", tmp_path / "cold")
    assert_same_run(tmp_path / "off", tmp_path / "warm")
    record = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert record["compilation_cache"] == str(cache / "xla")
    assert json.loads((tmp_path / "off" / "config.json").read_text())["compilation_cache"] is None
    assert not warning_lines(cold) and not warning_lines(warm)
    assert warm_s < 60  # (timing is the benchmark's; this only says it did not hang)


@pytest.mark.slow
def test_corrupt_entries_and_a_full_disk_cost_one_warning_line(tmp_path):
    cache = tmp_path / "cache"
    assert fool(tmp_path / "cold", cache).returncode == 0
    for entry in entries(cache):  # every program's entry garbled
        entry.write_bytes(b"not a compiled program")
    corrupt = fool(tmp_path / "corrupt", cache)
    assert corrupt.returncode == 0, corrupt.stderr
    assert len(warning_lines(corrupt)) == 1, corrupt.stderr
    assert "compilation cache" in warning_lines(corrupt)[0]
    assert_same_run(tmp_path / "cold", tmp_path / "corrupt")
    fresh = tmp_path / "fresh-cache"
    full = fool(tmp_path / "full", fresh, wrap=FULL_DISK)
    assert full.returncode == 0, full.stderr
    assert len(warning_lines(full)) == 1 and "No space left" in full.stderr, full.stderr
    assert_same_run(tmp_path / "cold", tmp_path / "full")


@pytest.mark.slow
def test_an_unusable_cache_folder_is_one_line_and_the_run_goes_on(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = fool(tmp_path / "run", blocker / "cache")  # its parent is a file: mkdir fails
    assert proc.returncode == 0, proc.stderr
    (line,) = warning_lines(proc)
    assert "cannot use" in line and str(blocker) in line
    assert json.loads((tmp_path / "run" / "config.json").read_text())["compilation_cache"] is None


@pytest.mark.slow
def test_two_processes_compiling_into_one_cold_cache(tmp_path):
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda name: fool(tmp_path / name, cache), ["a", "b"])
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_prune_removes_the_oldest_entries_only(tmp_path):
    folder = tmp_path / "xla"
    folder.mkdir()
    for i in range(6):  # 6 entries of 1000 bytes, oldest first
        entry = folder / f"jit_{i}-cache"
        entry.write_bytes(b"x" * 1000)
        os.utime(entry, (1000 + i, 1000 + i))
    (folder / "notes.txt").write_bytes(b"y" * 5000)  # not an entry: never touched
    removed = compile_cache.prune(folder, 3500)
    assert removed == 3000
    assert sorted(p.name for p in folder.iterdir()) == [
        "jit_3-cache", "jit_4-cache", "jit_5-cache", "notes.txt",
    ]  # fmt: skip
    assert compile_cache.prune(folder, 10**9) == 0


def test_switches_and_bounds_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(compile_cache.ROOT_ENV, str(tmp_path / "c"))
    assert compile_cache.cache_root() == tmp_path / "c"
    for off in ("off", "0", "OFF", "no", "false"):
        monkeypatch.setenv(compile_cache.SWITCH_ENV, off)
        assert compile_cache.switched_off()
    monkeypatch.setenv(compile_cache.SWITCH_ENV, "on")
    assert not compile_cache.switched_off()
    monkeypatch.setenv(compile_cache.MAX_BYTES_ENV, "1.5")
    assert compile_cache.max_bytes() == int(1.5 * 2**20)
    monkeypatch.setenv(compile_cache.MAX_BYTES_ENV, "lots")
    assert compile_cache.max_bytes() == compile_cache.DEFAULT_MAX_BYTES
