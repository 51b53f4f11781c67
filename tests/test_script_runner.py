"""The tests' script runner (tests/script_runner.py) reports what a fresh `python script.py`
reports: the same exit code, stdout and stderr for exits, errors, tracebacks, atexit output,
relative paths and jax computations, and None for a command past its timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .conftest import REPO
from .script_runner import ScriptRunner

SCRIPTS = {
    "exit_3": "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n",
    "exit_message": "import sys\nsys.exit('script.py: error: a message')\n",
    "traceback": "def f():\n    raise ValueError('boom')\nf()\n",
    "atexit_and_cwd": textwrap.dedent(
        """\
        import atexit, pathlib, sys
        atexit.register(lambda: print('at exit', file=sys.stderr))
        pathlib.Path('written.txt').write_text(sys.argv[1])
        print(sys.argv[1:])
        """
    ),
    "jax": "import jax.numpy as jnp\nprint(float(jnp.arange(5.0).sum()))\n",
}


@pytest.fixture(scope="module")
def runner():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with ScriptRunner(env) as r:
        yield r


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_runner_reports_what_a_fresh_interpreter_reports(name, runner, tmp_path):
    script = tmp_path / f"case_{name}.py"  # not jax.py: it would shadow jax
    script.write_text(SCRIPTS[name])
    results = []
    for how in ("subprocess", "runner"):
        cwd = tmp_path / how
        cwd.mkdir()
        argv = [str(script), "an argument"]
        if how == "runner":
            results.append(runner.run(argv, cwd=cwd, timeout=60))
        else:
            env = {**os.environ, "JAX_PLATFORMS": "cpu"}
            res = subprocess.run(
                [sys.executable, *argv], capture_output=True, text=True, cwd=cwd, env=env
            )
            results.append((res.returncode, res.stdout, res.stderr.replace(str(cwd), "CWD")))
        written = cwd / "written.txt"
        assert written.exists() == (name == "atexit_and_cwd")
    fresh, forked = results
    if name == "traceback":  # the frames above the script's own differ (runpy's)
        assert forked[0] == fresh[0] == 1
        assert forked[2].splitlines()[-1] == fresh[2].splitlines()[-1] == "ValueError: boom"
        assert "line 2, in f\n    raise ValueError" in forked[2]
    else:
        assert forked == (fresh[0], fresh[1], fresh[2].replace("CWD", str(tmp_path / "runner")))


def test_a_real_script_and_a_timeout(runner, tmp_path):
    code, out, err = runner.run([REPO / "experiments" / "fool.py", "--population=3"], tmp_path, 60)
    fresh = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "fool.py"), "--population=3"],
        capture_output=True,
        text=True,
    )
    assert (code, out, err) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert code == 2 and err.startswith("fool.py: error: --population=3")
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    assert runner.run([sleeper], tmp_path, timeout=1)[0] is None
