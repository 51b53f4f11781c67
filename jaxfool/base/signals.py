"""SIGINT/SIGTERM as a request to stop after the current chunk of generations.

Light on purpose: a script installs `Stop` before it imports JAX, so a signal at any moment
(imports and compilation included) is recorded, never raised as a KeyboardInterrupt inside
XLA (which crashed runs with a segfault), and the run loop acts on it at its next check.
"""

from __future__ import annotations

import signal


class Stop:
    """Records SIGINT/SIGTERM instead of raising; true once one arrived. `uninstall`
    restores the previous handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: list[str] = []
        self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}

    def _handler(self, signum, frame) -> None:
        del frame
        self.received.append(signal.Signals(signum).name)

    def __bool__(self) -> bool:
        return bool(self.received)

    @property
    def name(self) -> str:
        """The first signal's name ("SIGINT"), or "" if none arrived."""
        return self.received[0] if self.received else ""

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by that signal (130 for SIGINT)."""
        return 128 + int(getattr(signal, self.name)) if self.received else 0

    def uninstall(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
