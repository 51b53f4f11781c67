"""A cache of converted weights: foreign files (.caffemodel, .pth) -> Flax variables, kept as npz.

Converting a weights file costs seconds on every load; `cached_variables` does it once and keeps
the result as `<cache dir>/<kind>-<sha256 prefix>.npz` (the `jaxfool.base.npz` format, written
atomically). The cache dir is `cache_dir`, else `$JAXFOOL_CACHE`, else `~/.cache/jaxfool`.

An entry is used only if its metadata records the same kind, source sha256 and
`CONVERTER_VERSION`; otherwise, or when it is unreadable, it is rebuilt with a warning. To avoid
hashing a large source on every load (as make and git do), an entry that recorded the source's
path, size and mtime_ns vouches for its sha256 while those are unchanged, unless the file had
been modified too shortly before it was hashed for its mtime to tell later changes apart ("racy"
timestamps). A cache that cannot be read or written costs only the conversion (with a warning);
it never fails the load.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import jaxfool
from jaxfool.base import npz
from jaxfool.base.fileio import RACY_NS, file_sha256, remember_sha256

# Bump when a conversion (a network file's converter, e.g. `caffenet_params_from_caffemodel`, or
# what a loader passes as `convert`) changes its output: entries of older versions are rebuilt.
CONVERTER_VERSION = 1
ENV_VAR = "JAXFOOL_CACHE"

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`$JAXFOOL_CACHE`, else `~/.cache/jaxfool`."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxfool"


def read_meta(entry: Path) -> dict[str, Any] | None:
    """The metadata of a cache entry, without reading its arrays; None if unreadable."""
    try:
        with np.load(entry, allow_pickle=False) as z:
            meta = json.loads(z[npz.META_KEY].tobytes())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return meta if isinstance(meta, dict) else None


def source_meta(source: Path, kind: str, cache_dir: Path) -> dict[str, Any]:
    """What an entry for `source` must record: its stat, sha256 and the conversion's identity.

    The sha256 is taken from an entry vouching for the source's unchanged path, size and
    mtime_ns (see the module doc), else computed; "vouched" says which.
    """
    st = source.stat()
    meta = {"source": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        entries = sorted(cache_dir.glob(f"{kind}-*.npz"))
    except OSError:
        entries = []
    for entry in entries:
        old = read_meta(entry) or {}
        if (
            all(old.get(k) == v for k, v in meta.items())
            and isinstance(old.get("sha256"), str)
            and old.get("hashed_at_ns", 0) - st.st_mtime_ns > RACY_NS
        ):
            meta.update(sha256=old["sha256"], hashed_at_ns=old["hashed_at_ns"], vouched=True)
            break
    else:
        hashed_at = time.time_ns()  # before reading: a change while hashing is then "racy"
        meta.update(sha256=file_sha256(source), hashed_at_ns=hashed_at, vouched=False)
    remember_sha256(source, st.st_size, st.st_mtime_ns, meta["sha256"], meta["hashed_at_ns"])
    return meta | {
        "kind": kind,
        "converter_version": CONVERTER_VERSION,
        "jaxfool_version": jaxfool.__version__,
    }


def _load_valid(entry: Path, meta: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(the entry's variables, "") if it is valid for `meta`, else (None, why not)."""
    try:
        variables, old = npz.load_params(entry)
    except (OSError, ValueError) as e:  # WeightsFileError, or metadata that is not JSON
        return None, f"unreadable ({e})"
    for key in ("kind", "sha256", "converter_version"):
        if old.get(key) != meta[key]:
            return None, f"{key} is {old.get(key)!r}, not {meta[key]!r}"
    if not isinstance(variables.get("params"), dict) or not variables["params"]:
        return None, "no params"
    return variables, ""


def _save(entry: Path, variables: dict[str, Any], meta: dict[str, Any]) -> None:
    meta = {k: v for k, v in meta.items() if k != "vouched"}
    try:
        npz.save_params(entry, variables, meta)
    except OSError as e:
        log.warning("weights cache %s not written (%s); converting on every load", entry, e)


def cached_variables(
    source: str | Path,
    kind: str,
    convert: Callable[[], dict[str, Any]],
    cache_dir: str | Path | None = None,
    check_sha256: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Flax variables (nested dicts of NumPy arrays) converted from `source` by `convert()`.

    `kind` names the conversion (e.g. "caffenet", "efficientnet_lite0"; letters, digits, `_`
    and `.`). `check_sha256(sha256)`, if given, runs on the source's sha256 before the cache or
    `convert` is used, and may raise to refuse the file. Errors of `convert` propagate and are
    never cached.
    """
    if not re.fullmatch(r"[\w.]+", kind):
        raise ValueError(f"cache kind {kind!r}: only letters, digits, _ and . are allowed")
    source = Path(source).resolve()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    meta = source_meta(source, kind, cache_dir)
    if check_sha256 is not None:
        check_sha256(meta["sha256"])
    entry = cache_dir / f"{kind}-{meta['sha256'][:16]}.npz"
    try:
        exists = entry.is_file()
    except OSError:  # e.g. a cache dir we may not search
        exists = False
    if exists:
        variables, why = _load_valid(entry, meta)
        if variables is not None:
            if not meta["vouched"] and meta["hashed_at_ns"] - meta["mtime_ns"] > RACY_NS:
                _save(entry, variables, meta)  # record the source's new stat: no hashing next time
            return variables
        log.warning("weights cache %s: %s; rebuilding it", entry, why)
    variables = convert()
    _save(entry, variables, meta)
    return variables
