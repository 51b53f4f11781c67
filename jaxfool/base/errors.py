"""The library's errors that a user's input or the machine causes, each a one-line message
(light: scripts import it before JAX). Scripts exit 2 for bad input, 4 when the machine said no
(`WriteFailed`, `OutOfMemory`), 0 for `NothingToDo`."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad setting of a config dataclass; `field` names it (a script reports it as --field)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM during a run's start-up: it stopped before its first generation and left
    nothing behind. `signal_name` is the signal's name ("SIGINT")."""

    def __init__(self, signal_name: str, message: str):
        super().__init__(message)
        self.signal_name = signal_name


class RunDirError(RuntimeError):
    """A run directory cannot be used or read (the message names it and why)."""


class WriteFailed(OSError):
    """A file could not be written (a full disk, a quota, a read-only file system); the file is
    as it was (writes are atomic). The message names the file and why."""

    def __str__(self) -> str:
        return str(self.strerror)


class OutOfMemory(RuntimeError):
    """A computation does not fit in the device's (or the host's) memory; the message names
    the settings to lower."""


class NothingToDo(Exception):
    """A resumed run is already at (or past) the generation asked for: nothing was touched."""
