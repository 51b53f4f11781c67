"""The experiment scripts' command-line contract: bad input ends a script with one line on
stderr, `NAME.py: error: ...`, and exit code 2; nothing else about absl changes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from absl import app, flags


class FlagError(ValueError):
    """Bad input given on the command line: a flag's value, or the file it names. The
    message names the flag or the file."""


def fail(message: object) -> NoReturn:
    """Prints `NAME.py: error: message` on stderr and exits with code 2."""
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    sys.exit(2)


def run(main: Callable[[list[str]], object]) -> None:
    """absl's `app.run(main)`, except that an unparsable flag value, a `FlagError` or a
    `runs.RunDirError` ends the script through `fail`."""
    from jaxfool.runs import RunDirError

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(e)

    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except (FlagError, RunDirError) as e:
            fail(e)

    app.run(guarded, flags_parser=parse)
