"""A non-editable install finds the weights jaxfool ships: `pip install .` into a fresh virtualenv,
then `experiments/fool.py --generations=5` run from another directory evolves against the shipped
LeNet, which the wheel carries as the data-only package `jaxfool.models` (setup.py).

The fresh virtualenv gets the test environment's installed dependencies through a `.pth` file
(so nothing is downloaded), but not the checkout: jaxfool comes from the wheel alone.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow
BUILD_FILES = ("pyproject.toml", "setup.py", "README.md", "LICENSE")


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory):
    """The python of a fresh virtualenv holding jaxfool installed (not editable) from a copy of
    the package's sources."""
    pytest.importorskip("pip", reason="installing needs pip")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_FILES:
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("jaxfool", "models"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    purelib = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    deps = "\n".join(p for p in site.getsitepackages() if os.path.isdir(p))
    (tmp / purelib.stdout.strip() / "_test_deps.pth").write_text(deps + "\n")
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
        "--no-deps", "--no-build-isolation", str(src))  # fmt: skip
    return python


def clean_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env | {"JAXFOOL_CACHE": str(tmp_path / "cache")}


def test_the_wheel_carries_the_shipped_weights(venv_python, tmp_path):
    check = (
        "import json, jaxfool; from jaxfool import classifiers; "
        "print(json.dumps([jaxfool.__file__, str(classifiers.MODELS['lenet'].default_weights)]))"
    )
    res = run(str(venv_python), "-c", check, cwd=tmp_path, env=clean_env(tmp_path))
    package, weights = json.loads(res.stdout)
    venv = venv_python.parent.parent
    assert package.startswith(str(venv)) and weights.startswith(str(venv))  # not the checkout
    assert weights.endswith("jaxfool/models/lenet_mnist.npz")
    assert (REPO / "models" / "lenet_mnist.npz").read_bytes() == open(weights, "rb").read()


def test_fool_runs_from_another_directory(venv_python, tmp_path):
    script = REPO / "experiments" / "fool.py"
    out = tmp_path / "run"
    cmd = (str(venv_python), str(script), "--generations=5", f"--out={out}")
    run(*cmd, cwd=tmp_path, env=clean_env(tmp_path))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "lenet" and len(summary["classes"]) == 10
