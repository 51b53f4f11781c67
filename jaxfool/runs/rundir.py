"""A run directory that knows which files it made: `--overwrite` removes only those.

A run writes `manifest.json` first: the marker that the directory is a jaxfool run and the list
of every file the run wrote (relative paths). Replacing a run deletes exactly the files on that
list and the sub-directories that are left empty, never a file the run did not write; a
non-empty directory without a manifest is refused, naming what it holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from jaxfool.base import fileio
from jaxfool.base.errors import RunDirError

MANIFEST = "manifest.json"
FORMAT = "jaxfool run"


def _check_directory(path: Path) -> None:
    """A RunDirError when `path` or one of its parents exists and is not a directory."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is" if p == path else f"(a parent of {path}) is"
                raise RunDirError(f"{p} {what} a file, not a directory")
            return


def read_manifest(path: str | Path) -> dict | None:
    """The manifest of run directory `path`, None if it has none; RunDirError if corrupt."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text())
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
            raise ValueError
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise RunDirError(f"{file}: not a jaxfool run manifest") from None
    return manifest


def describe(path: Path, limit: int = 4) -> str:
    """'3 entries (a.txt, config.json, notes/)' for a refusal message."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} ({shown})"


class RunDir:
    """The files of one run under `path`, recorded in its manifest as they are written."""

    def __init__(self, path: Path, files: Iterable[str] = (), created: bool = False):
        self.path = Path(path)
        self.files: list[str] = list(dict.fromkeys(files))
        self.created = created  # this run made the directory itself (it may remove it)

    @staticmethod
    def check_free(path: str | Path, overwrite: bool = False) -> dict | None:
        """Raises what `create` would refuse, touching nothing; returns the previous run's
        manifest when `overwrite` will replace one."""
        path = Path(path)
        _check_directory(path)
        if not path.exists() or not any(path.iterdir()):
            return None
        manifest = read_manifest(path)
        if manifest is None:
            raise RunDirError(
                f"{path} is not empty and is not a jaxfool run (no {MANIFEST}; it holds "
                f"{describe(path)}); choose another --out, nothing was deleted"
            )
        if not overwrite:
            raise RunDirError(f"{path} already holds a run; choose another --out or --overwrite")
        return manifest

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False) -> RunDir:
        """A new run in `path`: an empty or absent directory, or with `overwrite` a previous
        run's directory, whose recorded files are removed first (nothing else is)."""
        path = Path(path)
        previous = cls.check_free(path, overwrite)
        created = not path.exists()
        if previous is not None:
            cls(path, previous["files"]).remove_files()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"{path}: cannot create the run directory ({e.strerror})") from None
        run = cls(path, created=created)
        try:
            run.record()
        except OSError:
            run.discard()  # e.g. a full disk: no half-made run is left behind
            raise
        return run

    @classmethod
    def existing(cls, path: str | Path) -> RunDir:
        """An existing run to continue (`--resume`); a run from before manifests gets one."""
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"{path}: no such run directory")
        manifest = read_manifest(path)
        return cls(path, manifest["files"] if manifest else ())

    def record(self, *paths: str | Path) -> None:
        """Adds files (absolute, or relative to the run) to the manifest, atomically. Call it
        before writing them: a crash in between leaves a listed file that does not exist,
        never an unlisted file of the run."""
        for p in paths:
            rel = Path(p).resolve().relative_to(self.path.resolve()).as_posix()
            if rel not in self.files:
                self.files.append(rel)
        fileio.write_json(self.path / MANIFEST, {"format": FORMAT, "files": self.files})

    def remove_files(self) -> None:
        """Deletes the recorded files, the manifest, and sub-directories left empty."""
        dirs = set()
        for rel in self.files:
            file = self.path / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                continue  # a manifest never names files outside its run
            if file.is_file() or file.is_symlink():
                file.unlink()
            dirs.update(p for p in file.parents if self.path in p.parents)
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        manifest = self.path / MANIFEST
        if manifest.exists():
            manifest.unlink()
        self.files = []

    def discard(self) -> None:
        """Undoes a run that never got going: its files, and its directory if it made it and
        nothing else is there."""
        self.remove_files()
        if self.created and self.path.is_dir() and not any(self.path.iterdir()):
            os.rmdir(self.path)

    def write_json(self, rel: str, obj) -> Path:
        """Records, then writes (atomically), a JSON file of the run."""
        self.record(self.path / rel)
        return fileio.write_json(self.path / rel, obj)
