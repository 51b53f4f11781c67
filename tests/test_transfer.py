"""jaxfool.studies.transfer and experiments/transfer.py: scoring elites of one model with others."""

from __future__ import annotations

import json
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool import classifiers
from jaxfool.base.npz import save_params
from jaxfool.classifiers import Classifier, train
from jaxfool.classifiers.data.mnist import BUNDLED_DIR, load_mnist
from jaxfool.studies import transfer

from . import script_runner
from .conftest import REPO

FOOL = [sys.executable, str(REPO / "experiments" / "fool.py")]
TRANSFER = [sys.executable, str(REPO / "experiments" / "transfer.py")]
SMALL = ["--encoding=direct", "--population=20", "--generations=10", "--log_every=10"]


def run(cmd, *args):
    return script_runner.run(cmd + list(args), capture_output=True, text=True, timeout=300)


# --- pure functions ------------------------------------------------------------------------------


def test_same_model_compares_weights_by_digest(tmp_path):
    """The same weights are the same model wherever the file is (a run's weights record holds
    their sha256, not the path of the machine it ran on); defaults are filled in."""
    shipped = classifiers.shipped_file("lenet_mnist.npz")
    copy, other = tmp_path / "copy.npz", tmp_path / "other.npz"
    copy.write_bytes(shipped.read_bytes())
    other.write_bytes(shipped.read_bytes() + b"x")
    default = transfer.ModelRef("lenet")
    assert transfer.same_model(default, transfer.ModelRef("lenet", str(shipped)))
    assert transfer.same_model(default, transfer.ModelRef("lenet", str(copy)))
    assert not transfer.same_model(default, transfer.ModelRef("lenet", str(other)))
    assert not transfer.same_model(default, transfer.ModelRef("x"))
    assert not transfer.same_model(default, transfer.ModelRef("lenet", None, "m"))
    record = classifiers.weights_record("lenet")
    assert record["shipped"] and record["file"] == "lenet_mnist.npz"
    source = transfer.source_ref("lenet", record, None)
    assert source.label() == "lenet" and transfer.same_model(source, default)
    theirs = transfer.source_ref("lenet", classifiers.weights_record("lenet", str(other)), None)
    assert theirs.label() == "lenet:other.npz"
    assert transfer.same_model(theirs, transfer.ModelRef("lenet", str(other)))
    assert not transfer.same_model(theirs, default)


def test_same_class_confidence_and_cell_stats():
    probs = np.array([[0.9, 0.1], [0.005, 0.995], [0.5, 0.5]])
    conf = transfer.same_class_confidence(np.log(probs), np.array([0, 1, 5]))
    np.testing.assert_allclose(conf[:2], [0.9, 0.995])
    assert np.isnan(conf[2])  # class 5 does not exist in a 2-class target
    stats = transfer.cell_stats(conf, 0.99, transfer.top1_hits(np.log(probs), [0, 1, 5]))
    assert stats["n"] == 2
    assert stats["median_confidence"] == pytest.approx((0.9 + 0.995) / 2)
    assert stats["fraction_above"] == 0.5 and stats["top1_fraction"] == 1.0
    assert transfer.cell_stats(np.full(3, np.nan))["median_confidence"] is None


def pixel_logits(params, images):
    """A fake classifier: class = first pixel mod 10, with margin params["margin"]."""
    cls = images[:, 0, 0, 0].astype(jnp.int32) % 10
    return params["margin"] * jnp.eye(10, dtype=jnp.float32)[cls]


def fake_run(name: str, classes: list[int], weights: str | None = None) -> transfer.RunElites:
    imgs = np.zeros((len(classes), 28, 28, 1), np.uint8)
    imgs[:, 0, 0, 0] = classes
    return transfer.RunElites(
        run=name,
        source=transfer.ModelRef("lenet", weights),
        classes=np.asarray(classes),
        images=imgs,
        confidences=np.ones(len(classes)),
        files=[f"elites/{c}.png" for c in classes],
    )


def test_matrix_pools_runs_of_one_model_and_scores_each_target(tmp_path):
    shipped = classifiers.shipped_file("lenet_mnist.npz")
    other = tmp_path / "other.npz"
    other.write_bytes(b"other weights")
    runs = [
        fake_run("a", [0, 1, 2]),
        fake_run("b", [3, 4], str(shipped)),  # the default weights, named explicitly
        fake_run("c", [5, 6], str(other)),
    ]
    groups = transfer.group_by_source(runs)
    assert [len(members) for _, members in groups] == [2, 1]
    assert groups[0][0] == transfer.ModelRef("lenet")  # labelled "lenet", not the file
    clf = Classifier("fake", pixel_logits, (28, 28, 1), tuple("0123456789"))
    wide = Classifier("wide", pixel_logits, (32, 32, 3), tuple("0123456789"))
    targets = [
        (transfer.ModelRef("lenet"), clf, {"margin": jnp.float32(20.0)}),  # p ~ 0.99999
        (transfer.ModelRef("lenet", str(other)), clf, {"margin": jnp.float32(0.0)}),  # 0.1
        (transfer.ModelRef("imagenet"), wide, {"margin": jnp.float32(1.0)}),
    ]
    m = transfer.transfer_matrix(groups, targets, threshold=0.99)
    assert [s["label"] for s in m["sources"]] == ["lenet", "lenet:other.npz"]
    assert [t["label"] for t in m["targets"]] == ["lenet", "lenet:other.npz", "imagenet"]
    assert [s["images"] for s in m["sources"]] == [5, 2]
    p_top = 1 / (1 + 9 * np.exp(-20.0))
    for row in range(2):
        assert m["median_confidence"][row][0] == pytest.approx(p_top)
        assert m["fraction_above"][row][0] == 1.0
        assert m["median_confidence"][row][1] == pytest.approx(0.1)
        assert m["fraction_above"][row][1] == 0.0
        assert m["median_confidence"][row][2] is None  # 28x28 images vs a 32x32x3 model
        assert m["cells"][row][2]["n"] == 0
    assert [c["same_model"] for c in m["cells"][0]] == [True, False, False]
    assert [c["same_model"] for c in m["cells"][1]] == [False, True, False]
    table = transfer.markdown(m)
    lines = table.splitlines()
    assert lines[2] == "| source \\ target | lenet | lenet:other.npz | imagenet |"
    assert lines[4].startswith("| lenet (5 images) | **99.99") and "| 10.00% | n/a |" in lines[4]
    assert "| lenet:other.npz (2 images) | 99.99" in table
    assert "| lenet:other.npz (2 images) | 2/2 | **0/2** | n/a |" in table
    assert "| lenet (5 images) | **5/5** | 0/5 | n/a |" in table


# --- end to end: two fool.py runs against two different LeNets -----------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A run against the shipped LeNet and one against a briefly trained second LeNet."""
    root = tmp_path_factory.mktemp("transfer")
    x, y = load_mnist(BUNDLED_DIR, "train")
    other = root / "lenet_b.npz"
    save_params(other, {"params": train.train_lenet(x, y, steps=150, seed=11)}, {})
    a, b = root / "run_a", root / "run_b"
    for out, extra in ((a, []), (b, [f"--weights={other}"])):
        res = run(FOOL, *SMALL, "--seed=1", f"--out={out}", *extra)
        assert res.returncode == 0, res.stderr
    return root, a, b, other


def test_cli_diagonal_reproduces_the_runs_confidences(two_runs, tmp_path):
    root, a, b, other = two_runs
    out = tmp_path / "t"
    res = run(TRANSFER, f"--runs={a},{b}", f"--models=lenet,lenet:{other}", f"--out={out}")
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "transfer.json").read_text())
    assert [s["label"] for s in m["sources"]] == ["lenet", "lenet:lenet_b.npz"]
    assert [t["label"] for t in m["targets"]] == ["lenet", "lenet:lenet_b.npz"]
    assert np.asarray(m["median_confidence"], dtype=float).shape == (2, 2)
    for i, (src, run_dir) in enumerate(zip(m["sources"], (a, b), strict=True)):
        summary = json.loads((run_dir / "summary.json").read_text())
        own = {c["image"]: c for c in summary["classes"]}
        assert len(src["per_image"]) == len(own) == 10
        label = m["targets"][i]["label"]
        for rec in src["per_image"]:
            want = own[rec["image"]]
            # The same model on the saved PNG gives the run's own score (log-probabilities
            # compared, so confidences near 1 are compared on 1 - p).
            got = np.log(rec["target_confidence"][label])
            assert got == pytest.approx(want["log_prob"], rel=1e-4, abs=1e-7)
        assert m["cells"][i][i]["same_model"] and not m["cells"][i][1 - i]["same_model"]
        diag = m["median_confidence"][i][i]
        assert diag == pytest.approx(summary["median_confidence"], rel=1e-5)
        # the other model really was used: its scores differ
        off = [r["target_confidence"][m["targets"][1 - i]["label"]] for r in src["per_image"]]
        assert not np.allclose(off, [own[r["image"]]["confidence"] for r in src["per_image"]])
        assert m["median_confidence"][i][1 - i] == pytest.approx(float(np.median(off)))
    table = (out / "transfer.md").read_text()
    assert table in res.stdout
    assert table.count("| lenet (10 images) |") == 2  # one row in each of the two tables


def test_cli_refuses_to_overwrite(two_runs, tmp_path):
    _, a, _, _ = two_runs
    out = tmp_path / "t"
    out.mkdir()
    (out / "transfer.json").write_text("keep")
    res = run(TRANSFER, f"--runs={a}", "--models=lenet", f"--out={out}")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0]
    assert (out / "transfer.json").read_text() == "keep"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models=lenet"], "--runs"),
        (["--runs={a}"], "--models"),
        (["--runs={a}", "--models=lenet", "--threshold=0"], "--threshold"),
        (["--runs={a}", "--models=lenet", "--threshold=high"], "--threshold"),
        (["--runs=/no/such/run", "--models=lenet"], "/no/such/run"),
        (["--runs={a}", "--models=resnet"], "resnet"),
        (["--runs={a}", "--models=lenet:/no/such.npz"], "/no/such.npz"),
        (["--runs={a}", "--models=lenet_paper"], "lenet_paper"),
    ],
)
def test_cli_bad_flags_give_one_line_errors(two_runs, tmp_path, args, message):
    _, a, _, _ = two_runs
    out = tmp_path / "t"
    res = run(TRANSFER, *[x.format(a=a) for x in args], f"--out={out}")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("transfer.py: error:") and message in lines[0]
    assert not out.exists()
