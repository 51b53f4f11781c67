"""A persistent compilation cache: a run's programs compile once per machine, not per start.

Tracing and XLA compilation are most of a short run's start-up (the MNIST main job compiles
for ~10 s of its ~19 s on a 2-core CPU). JAX can keep compiled programs on disk; `enable`
points it at `$JAXFOOL_CACHE/xla` (default `~/.cache/jaxfool/xla`), caching every program
however fast it compiled, and bounds the folder's size by removing the least recently written
entries first. `JAXFOOL_COMPILATION_CACHE=off` turns it off. Results do not depend on it: a
cached program is the same executable the compiler would make.

The cache never fails a run: a folder that cannot be created or written is reported in one
line and the run compiles without it; an unreadable or corrupt entry, a full disk or two
processes writing the same entry make JAX recompile, and its warnings about them are shown
once (one line) per process.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

ROOT_ENV = "JAXFOOL_CACHE"  # jaxfool's cache folder (also the converted-weights cache's home)
SWITCH_ENV = "JAXFOOL_COMPILATION_CACHE"  # "off" (or 0, false, no): no compilation cache
MAX_BYTES_ENV = "JAXFOOL_COMPILATION_CACHE_MAX_MB"
DEFAULT_MAX_BYTES = 2 << 30  # the MNIST job's programs take ~0.6 MB, Lite0's a few MB
ENTRY_SUFFIXES = ("-cache", "-atime")  # the files JAX's cache writes (and all we ever remove)
_JAX_WARNINGS = ("Error reading persistent compilation cache", "Error writing persistent")

_enabled: str | None = None
_warned = False


def cache_root() -> Path:
    """jaxfool's cache folder: $JAXFOOL_CACHE, else ~/.cache/jaxfool."""
    root = os.environ.get(ROOT_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "jaxfool"


def switched_off() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() in ("off", "0", "false", "no")


def max_bytes() -> int:
    """The folder's size bound: $JAXFOOL_COMPILATION_CACHE_MAX_MB megabytes, else 2 GiB."""
    text = os.environ.get(MAX_BYTES_ENV)
    try:
        return int(float(text) * 2**20) if text else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


def note(message: str) -> None:
    """One warning line on stderr, once per process."""
    global _warned
    if not _warned:
        _warned = True
        print(f"jaxfool: warning: {message}", file=sys.stderr, flush=True)


def prune(folder: Path, limit: int) -> int:
    """Removes the oldest cache entries (by modification time) until the folder's entries take
    at most `limit` bytes; only JAX's entry files are touched. Returns the bytes removed."""
    entries = []
    for path in folder.iterdir():
        if path.name.endswith(ENTRY_SUFFIXES):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = 0
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total - removed <= limit:
            break
        try:
            path.unlink()
            removed += size
        except OSError:
            pass
    return removed


def _show_cache_warning_once(showwarning):
    """A `warnings.showwarning` that turns JAX's per-entry cache warnings into one note."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text.startswith(_JAX_WARNINGS):
            first = text.split(": ", 1)[-1].splitlines()[0][:160]
            note(f"the compilation cache at {_enabled} failed ({first}); compiling without it")
            return
        showwarning(message, category, filename, lineno, file, line)

    return show


def enable() -> str | None:
    """Points JAX's persistent compilation cache at jaxfool's folder (once per process, before
    the first compilation); returns the folder, or None when off or unusable."""
    global _enabled
    if _enabled is not None or switched_off():
        return _enabled
    folder = cache_root() / "xla"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
        prune(folder, max_bytes())
    except OSError as e:
        note(f"cannot use {folder} for the compilation cache ({e.strerror or e}); "
             f"compiling without it (set {ROOT_ENV} or {SWITCH_ENV}=off)")  # fmt: skip
        return None
    settings = {
        "jax_compilation_cache_dir": str(folder),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    if "jax" in sys.modules:  # else JAX reads them from the environment when it is imported
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    else:
        os.environ.update({name.upper(): str(value) for name, value in settings.items()})
    warnings.showwarning = _show_cache_warning_once(warnings.showwarning)
    _enabled = str(folder)
    return _enabled


def location() -> str | None:
    """The folder the cache uses in this process (None: off, unusable, or not enabled)."""
    return _enabled
