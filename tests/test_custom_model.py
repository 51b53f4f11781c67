"""Your own model as --model=package.module:factory: fool.py and classify.py run it, and every
bad spec is a one-line error naming it."""

import json
import sys

import numpy as np
import pytest

from jaxfool import classifiers
from jaxfool.classifiers import custom as custom_model

from . import script_runner
from .conftest import REPO

SPEC = "tests.my_mlp:factory"


def script(name, *args, cwd=REPO):
    cmd = [sys.executable, str(REPO / "experiments" / f"{name}.py"), *args]
    return script_runner.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.parametrize("encoding", ["direct", "cppn"])
def test_fool_runs_your_own_model(tmp_path, encoding):
    out = tmp_path / "run"
    res = script("fool", f"--model={SPEC}", f"--encoding={encoding}", "--population=10",
                 "--generations=3", f"--out={out}")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == SPEC and len(summary["classes"]) == 10
    assert json.loads((out / "config.json").read_text())["flags"]["model"] == SPEC
    # the archive holds what the factory's classifier says of the saved images
    clf, params = classifiers.load_classifier(SPEC)
    from jaxfool.base import images
    from jaxfool.classifiers import scoring

    for c in summary["classes"][:3]:
        image = images.load_png(out / c["image"])
        lp = np.asarray(scoring.score(clf.logits, params, image[None]))[0]
        np.testing.assert_allclose(lp[c["index"]], c["log_prob"], rtol=1e-5, atol=1e-6)


def test_classify_runs_your_own_model(tmp_path):
    from PIL import Image

    photo = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30), np.uint8)).save(photo)
    res = script("classify", f"--model={SPEC}", "--json", "--top=3", str(photo))
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = [json.loads(line) for line in res.stdout.splitlines()]
    # the reference: the photo resized as the README says (Pillow, bilinear, to 28 x 28), the
    # factory's own logits, and a float64 softmax written out here
    from tests import my_mlp

    gray = Image.open(photo).convert("L").resize((28, 28), Image.BILINEAR)
    _, params = my_mlp.factory(None)
    logits = np.asarray(my_mlp.logits(params, np.asarray(gray)[None, :, :, None]), np.float64)[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p)[:3]
    assert np.diff(np.sort(p)[::-1][:4]).max() < -1e-4  # a clear order to compare
    assert [k for k, _, _ in row["top"]] == top.tolist()
    assert [label for _, label, _ in row["top"]] == [str(k) for k in top]
    np.testing.assert_allclose([q for _, _, q in row["top"]], p[top], rtol=1e-5)


BAD_MODULE = """
from jaxfool.classifiers import Classifier
def three(weights):
    return 3
def raises(weights):
    raise RuntimeError("no weights here")
def bad_shape(weights):
    return Classifier("x", lambda p, x: x, (28, 28), ("a",)), {}
not_callable = 5
"""


@pytest.mark.parametrize(
    "spec, words",
    [
        ("nosuchpackage.mod:factory", "no module named 'nosuchpackage'"),
        ("tests.my_mlp:nothing", "has no attribute 'nothing'"),
        ("badmod:not_callable", "not a factory"),
        ("badmod:raises", "the factory raised RuntimeError: no weights here"),
        ("badmod:three", "returned a int, not (Classifier, params)"),
        ("badmod:bad_shape", "image_shape (28, 28)"),
        ("a.b:c:d", "not a model name"),
    ],
)
def test_bad_specs_are_one_line_errors(tmp_path, monkeypatch, spec, words):
    (tmp_path / "badmod.py").write_text(BAD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(REPO))
    with pytest.raises(ValueError) as e:
        custom_model.load(spec, None)
    message = str(e.value)
    assert words in message and "\n" not in message, message
    if spec != "a.b:c:d":
        assert message.startswith(spec), message


def test_fool_says_which_spec_failed_in_one_line(tmp_path):
    res = script("fool", "--model=tests.my_mlp:nothing", f"--out={tmp_path / 'r'}")
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("fool.py: error:") and "tests.my_mlp:nothing" in line, line
    assert not (tmp_path / "r").exists()
