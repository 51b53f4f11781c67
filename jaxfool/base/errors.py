"""The library's errors that a user's input causes (light: scripts import it before JAX)."""

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
