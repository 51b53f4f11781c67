"""`.safetensors` state dicts through the `safetensors` package's NumPy API (no torch).

A safetensors file is a JSON header of names, dtypes, shapes and byte ranges followed by the raw
little-endian tensors: nothing in it is executed, so it needs no unpickler. Every failure is
one `SafetensorsFileError` line starting with the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxfool.base.fileio import read_bytes
from jaxfool.base.npz import WeightsFileError

SUFFIX = ".safetensors"


class SafetensorsFileError(WeightsFileError):
    """A safetensors file is missing, corrupt, or cannot be read here (a `ValueError`)."""


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """{name: NumPy array} of a `.safetensors` file."""
    path = Path(path)
    try:
        from safetensors.numpy import load
    except ImportError:
        raise SafetensorsFileError(
            f"{path}: reading .safetensors needs the safetensors package "
            "(pip install safetensors, or the [safetensors] extra)"
        ) from None
    data = read_bytes(path, SafetensorsFileError)
    if len(data) < 8:
        raise SafetensorsFileError(f"{path}: not a safetensors file ({len(data)} bytes)")
    try:
        tensors = load(data)
    except Exception as e:  # the Rust reader's errors (SafetensorError) and a bad header
        msg = " ".join(str(e).split())[:200]
        raise SafetensorsFileError(f"{path}: corrupt safetensors file ({msg})") from None
    return {name: np.asarray(array) for name, array in tensors.items()}
