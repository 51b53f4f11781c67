"""Runs `python experiments/X.py ARGS` many times without paying Python's and jax's import each
time: a server process imports the heavy libraries once (jax, flax, optax, numpy, absl, PIL),
starts no backend, and forks a child per command that runs the script as `__main__` with its
own argv, working directory and stdout/stderr files. A bad-flag case then takes ~0.1 s instead
of ~1.4 s (measured on the 2-core CPU, 1.1 s of which is `import jax`).

The child is the script's own process in every way that a test of its behaviour reads: exit
code (SystemExit as Python maps it, a traceback and 1 for an uncaught exception), stderr and
stdout, the files it writes, its signal handlers and atexit functions. The server refuses to
fork once a backend exists in it (XLA's threads do not survive a fork), so nothing compiled or
allocated is shared. Tests of process-level behaviour (signals, installs, the compilation
cache) still start real interpreters.

    with ScriptRunner(env) as runner:
        code, stdout, stderr = runner.run([script, *args], cwd=..., timeout=120)

`run` is `subprocess.run` for the tests: `[sys.executable, SCRIPT.py, *args]` with captured text
output goes through a runner (one per environment, kept for the test process); any other
command, or other arguments, go to `subprocess.run` itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PRELOAD = (
    "numpy",
    "jax",
    "jax.numpy",
    "flax.linen",
    "optax",
    "absl.app",
    "absl.flags",
    "PIL.Image",
)


class ScriptRunner:
    """One server process; `run` is one command at a time (use one runner per thread)."""

    def __init__(self, env: dict[str, str]):
        self._dir = tempfile.TemporaryDirectory(prefix="script_runner_")
        self._proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._count = 0
        self._lock = threading.Lock()  # one command at a time

    def run(self, argv: list[str], cwd: str | Path, timeout: float):
        """(exit code or None after `timeout` s, stdout, stderr) of `python *argv` in `cwd`."""
        with self._lock:
            return self._run(argv, cwd, timeout)

    def _run(self, argv, cwd, timeout):
        self._count += 1
        out = Path(self._dir.name) / f"{self._count}.out"
        err = Path(self._dir.name) / f"{self._count}.err"
        request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "timeout": timeout}
        request.update(stdout=str(out), stderr=str(err))
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the script server ended (exit code {self._proc.wait()})")
        code = json.loads(reply)["returncode"]
        return code, out.read_text(errors="replace"), err.read_text(errors="replace")

    def close(self):
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_RUNNERS: dict[tuple, ScriptRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def run(
    cmd, *, capture_output=False, text=False, timeout=None, cwd=None, env=None, check=False, **kw
):
    """`subprocess.run`, with a Python script's run (captured, as text) taken by a ScriptRunner."""
    cmd = [str(c) for c in cmd]
    is_script = len(cmd) >= 2 and cmd[0] == sys.executable and cmd[1].endswith(".py")
    if kw or not (capture_output and text and is_script):
        kw.update(capture_output=capture_output, text=text, timeout=timeout, cwd=cwd, env=env)
        return subprocess.run(cmd, check=check, **kw)
    env = dict(os.environ if env is None else env)
    key = tuple(sorted((k, v) for k, v in env.items() if k != "PYTEST_CURRENT_TEST"))  # per test
    with _RUNNERS_LOCK:
        if key not in _RUNNERS:
            if len(_RUNNERS) >= 3:  # tests that set their own environment each: keep 3
                _RUNNERS.pop(next(iter(_RUNNERS))).close()
            _RUNNERS[key] = ScriptRunner(env)
        runner = _RUNNERS[key]
    limit = 3600 if timeout is None else timeout
    code, out, err = runner.run(cmd[1:], cwd=os.getcwd() if cwd is None else cwd, timeout=limit)
    if code is None:
        raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err)
    res = subprocess.CompletedProcess(cmd, code, out, err)
    if check:
        res.check_returncode()
    return res


def _child(request: dict) -> None:
    """Becomes `python argv[0] argv[1:]`: never returns."""
    import atexit
    import runpy
    import traceback

    code = 1
    try:
        os.chdir(request["cwd"])
        opened = [os.open(os.devnull, os.O_RDONLY)]
        for name in ("stdout", "stderr"):
            opened.append(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        for fd, source in enumerate(opened):  # stdin empty; stdout, stderr to their files
            os.dup2(source, fd)
            os.close(source)
        script = os.path.abspath(request["argv"][0])
        sys.argv = [request["argv"][0], *request["argv"][1:]]
        sys.path[0] = os.path.dirname(script)
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:  # as the interpreter maps it
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit code as subprocess reports it, or None (killed) after `timeout` s."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)


def _serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    try:  # the [plots] extra, when installed: plot.py's and every run's progress.png
        importlib.import_module("matplotlib.figure")
        importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError:
        pass
    from jax._src import xla_bridge

    replies = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        if xla_bridge._backends:  # a backend's threads would not survive the fork
            raise RuntimeError("the script server started a jax backend; it cannot fork")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        code = _wait(pid, request["timeout"])
        replies.write(json.dumps({"returncode": code}) + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve()
