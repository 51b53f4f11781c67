"""Ctrl-C or SIGTERM at any moment of fool.py, start-up and compilation included: one line, no
traceback, no crash, and either nothing left behind or a run that resumes.

Each case sends its signal when the child says it reached a given moment, not after a fixed
sleep, so every branch runs on a machine of any speed. The child is fool.py itself, started by
a few lines (CHILD) that print a marker line at that moment: right after fool.py installs its
handlers (the signal then lands in the JAX imports), when it starts loading the classifier
(it lands in the loading and compiling), after the run directory and its config.json exist,
and after the first chunk of generations is logged. At the last two the child waits until the
signal has arrived, so the branch cannot depend on timing at all.
"""

import json
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from .conftest import REPO

FOOL = [sys.executable, str(REPO / "experiments" / "fool.py")]
RUN = ["--encoding=direct", "--population=20", "--generations=30", "--log_every=10"]

CHILD = textwrap.dedent(
    """
    import runpy, sys, time
    phase, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, script.rsplit("/", 1)[0])  # as `python experiments/fool.py` has it
    from jaxfool.base import signals

    stops = []
    install = signals.Stop.__init__

    def mark(text):
        print(f"MARK {phase}: {text}", flush=True)

    def wait_for_the_signal():
        deadline = time.monotonic() + 120
        while not stops[0] and time.monotonic() < deadline:
            time.sleep(0.01)

    def marked_install(self):
        install(self)
        stops.append(self)
        if phase == "imports":
            mark(f"handlers installed, jax imported: {'jax' in sys.modules}")

    signals.Stop.__init__ = marked_install
    if phase != "imports":  # later moments: the library is imported first, to patch it
        from jaxfool.base import fileio
        from jaxfool.runs import loop, store

        if phase == "compiling":
            build = loop.build

            def marked_build(*args, **kwargs):
                mark("loading the classifier")
                return build(*args, **kwargs)

            loop.build = marked_build
        elif phase == "run_directory":
            write_json = fileio.write_json

            def marked_write_json(path, obj):
                written = write_json(path, obj)
                if path.name == "config.json":
                    mark("config.json written")
                    wait_for_the_signal()
                return written

            fileio.write_json = marked_write_json
        elif phase == "generations":
            append_jsonl = store.append_jsonl

            def marked_append_jsonl(path, row):
                written = append_jsonl(path, row)
                mark(f"generation {row['generation']} logged")
                wait_for_the_signal()
                return written

            store.append_jsonl = marked_append_jsonl
    runpy.run_path(script, run_name="__main__")
    """
)


def _lines(stream, into):
    for line in stream:
        into.put(line)
    into.put(None)


def interrupt(out, sig, phase):
    """Runs fool.py, sends `sig` at the marker of `phase`; (code, stdout, stderr, marker,
    whether out/config.json existed when the signal was sent)."""
    cmd = [sys.executable, "-c", CHILD, phase, FOOL[1], *RUN, f"--out={out}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = queue.Queue(), queue.Queue()
    readers = [
        threading.Thread(target=_lines, args=(proc.stdout, stdout), daemon=True),
        threading.Thread(target=_lines, args=(proc.stderr, stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    seen, marker = [], None
    deadline = time.monotonic() + 300
    while marker is None:
        try:
            line = stdout.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:  # the child ended, or took 300 s, before the marker
            proc.kill()
            proc.wait()
            pytest.fail(f"no {phase} marker; stdout {''.join(seen)!r}")
        seen.append(line)
        if line.startswith(f"MARK {phase}:"):
            marker = line.strip()
    config_existed = (out / "config.json").is_file()
    proc.send_signal(sig)
    proc.wait(timeout=300)
    for reader in readers:
        reader.join(timeout=60)
    rest = [stdout.get() for _ in range(stdout.qsize())]
    seen += [line for line in rest if line is not None]
    err = "".join(line for line in (stderr.get() for _ in range(stderr.qsize())) if line)
    return proc.returncode, "".join(seen), err, marker, config_existed


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,phase",
    [(signal.SIGINT, "imports"), (signal.SIGTERM, "compiling"), (signal.SIGTERM, "run_directory"),
     (signal.SIGINT, "generations"), (signal.SIGTERM, "generations")],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else v,
)  # fmt: skip
def test_signal_is_one_line_and_leaves_a_clean_or_resumable_run(tmp_path, sig, phase):
    """Defect: a KeyboardInterrupt traceback, a segfault (rc 139), and a config.json that
    blocked the re-run."""
    out = tmp_path / "run"
    code, stdout, stderr, marker, config_existed = interrupt(out, sig, phase)
    assert "Traceback" not in stderr and code != -signal.SIGSEGV, stderr
    if phase == "imports":
        assert marker.endswith("jax imported: False"), marker  # it landed before JAX loaded
    if phase == "generations":  # after start-up: it stops after this chunk, outputs written
        assert code == 0, (code, stderr)
        assert marker == "MARK generations: generation 10 logged", marker
        name = signal.Signals(sig).name
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == f"interrupted by {name} at generation 10", summary["status"]
        assert f"continue with --resume={out}" in stdout
        if sig != signal.SIGINT:  # one resume is enough (a fool.py start-up each)
            return
        res = subprocess.run(FOOL + [f"--resume={out}"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["generations_completed"] == 30
        return
    # during start-up: one line, the shell's code for the signal, nothing left behind
    assert code == 128 + sig, (code, stderr)
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "during start-up; nothing was written" in stderr, stderr
    assert not out.exists()
    if phase == "run_directory":  # the run directory existed: it was removed, --out is free
        assert config_existed
        res = subprocess.run(FOOL + RUN + [f"--out={out}"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
