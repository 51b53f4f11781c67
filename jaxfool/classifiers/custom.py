"""Your own classifier without editing the library: `--model=package.module:factory`.

`factory(weights_path_or_None)` returns `(Classifier, params)`: a `jaxfool.classifiers.Classifier`
(name, `logits(params, uint8 images [B, H, W, C]) -> float32 [B, N]`, image shape, labels) and
the pytree `logits` takes. The module is imported as Python imports it (installed, or on
`PYTHONPATH`), and from the current directory too (as `python -m` would), so
`--model=mynets.lenet:factory` finds `./mynets/lenet.py`. Every way this can go wrong is one
`ValueError` line naming the spec.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from jaxfool.classifiers.protocol import Classifier

SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_spec(name: str) -> bool:
    """Whether `name` has the form `package.module:factory`."""
    return bool(SPEC.match(name))


def load(spec: str, weights: str | Path | None) -> tuple[Any, Any]:
    """(Classifier, params) from the factory named by `spec`, called with `weights`."""
    if not is_spec(spec):
        raise ValueError(f"{spec!r} is not a model name or 'package.module:factory'")
    module_name, attr = spec.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(f"{spec}: no module named {e.name!r}") from None
    except Exception as e:  # the module itself failed while importing
        raise ValueError(f"{spec}: importing {module_name} raised {_one_line(e)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ValueError(f"{spec}: module {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise ValueError(f"{spec}: {attr} is a {type(factory).__name__}, not a factory")
    try:
        result = factory(None if weights is None else str(weights))
    except Exception as e:
        raise ValueError(f"{spec}: the factory raised {_one_line(e)}") from None
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Classifier)):
        raise ValueError(
            f"{spec}: the factory returned a {type(result).__name__}, not (Classifier, params)"
        )
    clf = result[0]
    shape = tuple(clf.image_shape)
    if len(shape) != 3 or shape[-1] not in (1, 3) or min(shape) < 1:
        raise ValueError(f"{spec}: image_shape {shape} is not (H, W, 1) or (H, W, 3)")
    if len(clf.labels) < 1:
        raise ValueError(f"{spec}: the classifier has no labels")
    return result


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
