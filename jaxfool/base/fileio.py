"""Files: atomic writes (a file is either the old one or the complete new one, never half
written), reads that fail in one line, and SHA-256 digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from jaxfool.base.errors import WriteFailed


def _default_mode() -> int:
    """The mode open() would give a new file (0o666 less the umask); mkstemp makes 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


TEMPORARY = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{6,}\.tmp$")  # mkstemp's names in atomic_write


def is_temporary_name(name: str) -> bool:
    """Whether a file name is one `atomic_write` gives its temporary file."""
    return TEMPORARY.match(name) is not None


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Calls `write(f)` on a temporary file beside `path`, then renames it onto `path`. An
    operating-system error (no space left, a quota, a read-only disk) is `WriteFailed` naming
    the file, which is then as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteFailed):
            why = (e.strerror or str(e)).lower()
            raise WriteFailed(e.errno, f"{why} writing {path}") from e
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def not_a_regular_file(path: str | Path) -> str | None:
    """What an existing path is when it is not a regular file ('a directory', 'a character
    device', 'a FIFO', ...): reading /dev/zero or a FIFO would never end. None for a regular
    file (or a link to one) and for a path that does not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    kinds = [
        (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
    ]  # fmt: skip
    for test, what in kinds:
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_readable_file(path: str | Path, error: type[Exception], what: str = "file") -> None:
    """`error` naming `path` unless it is an existing regular file: 'PATH: no such <what>' or
    'PATH: not a regular file (a FIFO)'."""
    kind = not_a_regular_file(path)
    if kind is not None:
        raise error(f"{path}: not a regular file ({kind})")
    if not Path(path).is_file():
        raise error(f"{path}: no such {what}")


def read_bytes(path: str | Path, error: type[Exception]) -> bytes:
    """A file's bytes, or `error` in one line naming it: missing, not a regular file, or
    unreadable (why)."""
    path = Path(path)
    check_readable_file(path, error)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


RACY_NS = 3_000_000_000  # a file hashed within 3 s of its mtime may change unseen: not kept
_SHA256: dict[tuple[str, int, int], str] = {}


def remembered_sha256(path: str | Path) -> str:
    """`file_sha256`, remembered for this process per (resolved path, size, mtime_ns): a file
    whose size and mtime are unchanged is not read again (see `remember_sha256`)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _SHA256:
        return _SHA256[key]
    hashed_at = time.time_ns()  # before reading: a change while hashing is then "racy"
    digest = file_sha256(path)
    remember_sha256(path, st.st_size, st.st_mtime_ns, digest, hashed_at)
    return digest


def remember_sha256(
    path: str | Path, size: int, mtime_ns: int, digest: str, hashed_at_ns: int
) -> None:
    """Lets `remembered_sha256` answer `digest` for `path` while its size and mtime_ns are these
    (e.g. a digest the converted-weights cache took or vouched for). A digest taken within
    `RACY_NS` of the file's mtime is not kept: a change in the same timestamp tick would go
    unseen."""
    if hashed_at_ns - mtime_ns > RACY_NS:
        _SHA256[str(Path(path).resolve()), size, mtime_ns] = digest
