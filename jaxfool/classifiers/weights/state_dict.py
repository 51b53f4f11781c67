"""A torch state dict from either file format it comes in: `.pth`/`.pt` (`torch_file`) or
`.safetensors` (`safetensors_file`), chosen by the file's suffix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxfool.classifiers.weights import safetensors_file, torch_file


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """{name: NumPy array} of a `.safetensors` file, else of a torch `.pth`/`.pt` file; every
    failure is one `WeightsFileError` line naming the file."""
    path = Path(path)
    if path.suffix == safetensors_file.SUFFIX:
        return safetensors_file.load_state_dict(path)
    return torch_file.load_state_dict(path)
