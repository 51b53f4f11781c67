"""`.safetensors` weight files: the same state dict as the `.pth` it was saved from, through
every model that reads state dicts, and one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxfool import classifiers
from jaxfool.classifiers.weights.safetensors_file import SafetensorsFileError
from jaxfool.classifiers.weights.safetensors_file import load_state_dict as load_safetensors
from jaxfool.classifiers.weights.state_dict import load_state_dict

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors")


@pytest.fixture(scope="module")
def lite0_pth() -> Path:
    path = classifiers.MODELS["efficientnet_lite0"].default_weights
    if path is None or not Path(path).is_file():
        pytest.skip("needs the EfficientNet-Lite0 weights (the [imagenet] extra)")
    return Path(path)


@pytest.fixture(scope="module")
def lite0_safetensors(lite0_pth, tmp_path_factory) -> Path:
    flat = {k: np.array(v, order="C") for k, v in load_state_dict(lite0_pth).items()}
    out = tmp_path_factory.mktemp("st") / "lite0.safetensors"
    safetensors_numpy.save_file(flat, str(out))
    return out


def test_same_tensors_as_the_pth(lite0_pth, lite0_safetensors):
    pth, st = load_state_dict(lite0_pth), load_state_dict(lite0_safetensors)
    assert sorted(st) == sorted(pth) and len(st) == 296
    for name, array in pth.items():
        assert st[name].dtype == array.dtype and st[name].shape == array.shape, name
        np.testing.assert_array_equal(st[name], array, err_msg=name)


def test_same_logits_through_the_registry(lite0_pth, lite0_safetensors):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    logits = []
    for path in (lite0_pth, lite0_safetensors):
        clf, params = classifiers.load_classifier("efficientnet_lite0", path)
        logits.append(np.asarray(clf.logits(params, images)))
    np.testing.assert_array_equal(logits[0], logits[1])


@pytest.mark.parametrize("content", [b"", b"\x10\x00\x00\x00", b"\xff" * 64, "truncated"])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, lite0_safetensors, content):
    path = tmp_path / "bad.safetensors"
    if content == "truncated":
        content = lite0_safetensors.read_bytes()[:5000]
    path.write_bytes(content)
    with pytest.raises(SafetensorsFileError) as e:
        load_state_dict(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    with pytest.raises(SafetensorsFileError, match="no such file"):
        load_safetensors(tmp_path / "missing.safetensors")
