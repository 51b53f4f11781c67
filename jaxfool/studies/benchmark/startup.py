"""Start-up: how long `fool.py --generations=1` takes from a cold and from a warm compilation
cache, and where the warm start's time goes.

Each measurement is a fresh process of the real entry point (as a user runs it), in a fresh
cache folder ($JAXFOOL_CACHE) for the cold start, then in the same folder for the warm starts
(the best of `repeats`). Reported beside them: the import of the library (`python -c "import
jaxfool.runs"`, best of `repeats`), the run's own "compiled and scored the initial population
in X s" (its start-up inside the process) and the cache's size.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxfool.studies.benchmark.timing import sig

FOOL = Path(__file__).resolve().parents[3] / "experiments" / "fool.py"
STARTED = re.compile(r"compiled and scored the initial population in ([0-9.]+)s")


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    """(wall seconds, stdout) of a command that must succeed."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise RuntimeError(f"{' '.join(cmd[1:3])}: {tail[0]}")
    return seconds, proc.stdout


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def startup_case_row(case) -> dict:
    """Cold and warm start of `fool.py <case.script_args> --generations=1`."""
    if not FOOL.is_file():
        raise RuntimeError(f"{FOOL}: the start-up suite runs the checkout's experiments/fool.py")
    with tempfile.TemporaryDirectory(prefix="jaxfool-startup-") as tmp:
        env = {**os.environ, "JAXFOOL_CACHE": str(Path(tmp) / "cache"), "PYTHONUNBUFFERED": "1"}
        env.pop("JAXFOOL_COMPILATION_CACHE", None)
        run = [sys.executable, str(FOOL), *case.script_args, "--generations=1", "--log_every=1"]

        def start(i: int) -> tuple[float, float | None]:
            seconds, out = timed([*run, f"--out={Path(tmp) / f'run{i}'}"], env)
            found = STARTED.search(out)
            return seconds, float(found.group(1)) if found else None

        cold, cold_inside = start(0)
        warm = [start(i + 1) for i in range(case.repeats)]
        warm_s, warm_inside = min(warm)
        imports = min(
            timed([sys.executable, "-c", "import jaxfool.runs"], env)[0]
            for _ in range(case.repeats)
        )
        cache_mib = folder_mib(Path(tmp) / "cache" / "xla")
    return {
        "command": f"fool.py {' '.join(case.script_args)} --generations=1".replace("  ", " "),
        "repeats": case.repeats,
        "cold_s": sig(cold),
        "warm_s": sig(warm_s),
        "warm_over_cold": round(warm_s / cold, 3),
        "import_s": sig(imports),
        "cold_startup_in_run_s": cold_inside,
        "warm_startup_in_run_s": warm_inside,
        "cache_mib": round(cache_mib, 2),
    }
