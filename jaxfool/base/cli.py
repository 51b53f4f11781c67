"""The experiment scripts' command-line contract: bad input ends a script with one line on
stderr, `NAME.py: error: ...`, and exit code 2; a signal during start-up with one line and
128 + the signal's number; nothing else about absl changes.

Light on purpose (no JAX): scripts import it, and install `Stop`, before anything slow.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from absl import app, flags

from jaxfool.base import compile_cache
from jaxfool.base.errors import (
    ConfigError,
    Interrupted,
    NothingToDo,
    OutOfMemory,
    RunDirError,
    WriteFailed,
)
from jaxfool.base.signals import Stop

__all__ = ["FlagError", "Stop", "fail", "from_flags", "given_flags", "run"]


class FlagError(ValueError):
    """Bad input given on the command line: a flag's value, or the file it names. The
    message names the flag or the file."""


def fail(message: object, code: int = 2) -> NoReturn:
    """Prints `NAME.py: error: message` on stderr and exits with `code`."""
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    sys.exit(code)


def flag_message(e: ConfigError) -> str:
    """A ConfigError as a flag error: '--field=value: message' (the flag's value as given)."""
    text = str(e)
    if text.startswith("--") or e.field not in flags.FLAGS:
        return text
    return f"--{e.field}={flags.FLAGS[e.field].value}: {text}"


def flag_values(cls: type) -> dict[str, Any]:
    """The values of the flags named like config dataclass `cls`'s fields, unchecked."""
    return {
        f.name: flags.FLAGS[f.name].value for f in dataclasses.fields(cls) if f.name in flags.FLAGS
    }


def from_flags(cls: type, **overrides: Any) -> Any:
    """An instance of config dataclass `cls` from the flags named like its fields."""
    return cls(**{**flag_values(cls), **overrides})


def given_flags() -> set[str]:
    """The names of the flags given on the command line (or in a --flagfile)."""
    return {name for name in flags.FLAGS if flags.FLAGS[name].present}


def run(main: Callable[[list[str]], object]) -> None:
    """absl's `app.run(main)`, except that an unparsable flag value, a `FlagError`, a library
    `ConfigError` or a `RunDirError` ends the script through `fail` (exit 2), a file that
    cannot be written or memory that runs out (`WriteFailed`, `OutOfMemory`) with exit 4,
    `NothingToDo` with its line and exit 0, and `Interrupted` with one line and 128 + the
    signal's number. Programs compile through the persistent compilation cache."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(e)

    def guarded(argv: list[str]) -> None:
        compile_cache.enable()  # before the first compilation; never fails the script
        try:
            main(argv)
        except (FlagError, RunDirError) as e:
            fail(e)
        except ConfigError as e:
            fail(flag_message(e))
        except (WriteFailed, OutOfMemory) as e:  # the machine, not the input, said no
            fail(e, code=4)
        except NothingToDo as e:
            print(f"{Path(sys.argv[0]).name}: {e}", flush=True)
        except Interrupted as e:
            print(f"{Path(sys.argv[0]).name}: {e}", file=sys.stderr)
            sys.exit(128 + int(getattr(signal, e.signal_name)))
        except KeyboardInterrupt:  # scripts without a Stop: Ctrl-C is one line too
            print(f"{Path(sys.argv[0]).name}: interrupted by SIGINT", file=sys.stderr)
            sys.exit(128 + signal.SIGINT)
        finally:
            # the work is done or refused: a signal while the interpreter shuts down (which
            # restores the default handlers it set) must not kill it half way with -SIGINT
            for s in Stop.SIGNALS:
                signal.signal(s, signal.SIG_IGN)

    app.run(guarded, flags_parser=parse)
