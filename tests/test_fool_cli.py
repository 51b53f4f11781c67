"""experiments/fool.py end to end: outputs, determinism, refusing to overwrite, flag errors."""

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool import classifiers
from jaxfool.base import images
from jaxfool.classifiers import scoring

from . import script_runner
from .conftest import REPO

FOOL = [sys.executable, str(REPO / "experiments" / "fool.py")]
SMALL = ["--population=20", "--generations=10", "--log_every=5", "--seed=3"]


def fool(*args, **kw):
    return script_runner.run(FOOL + list(args), capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    res = fool(*SMALL, f"--out={out}")
    assert res.returncode == 0, res.stderr
    return out


def test_run_writes_every_output(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in (
        "model",
        "encoding",
        "population",
        "generations_completed",
        "seed",
        "median_confidence",
        "num_classes_above",
        "classes",
    ):
        assert key in summary
    assert summary["generations_completed"] == 10 and summary["population"] == 20
    assert set(summary["num_classes_above"]) == {"0.99", "0.999", "0.9999"}
    assert [c["index"] for c in summary["classes"]] == list(range(10))
    confs = [c["confidence"] for c in summary["classes"]]
    assert summary["median_confidence"] == pytest.approx(float(np.median(confs)))
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["generation"] for m in metrics] == [5, 10]
    assert all(m["gens_per_s"] > 0 for m in metrics)
    assert (run_dir / "gallery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "checkpoint" / "state.npz").is_file()
    csv_rows = (run_dir / "classes.csv").read_text().splitlines()
    assert csv_rows[0].startswith("index,label,confidence") and len(csv_rows) == 11
    assert float(csv_rows[1].split(",")[2]) == pytest.approx(summary["classes"][0]["confidence"])
    assert json.loads((run_dir / "config.json").read_text())["flags"]["seed"] == 3


def test_saved_elite_images_score_what_the_summary_says(run_dir, lenet):
    """The PNG on disk, re-scored by the classifier, has the confidence in summary.json."""
    clf, params = lenet
    summary = json.loads((run_dir / "summary.json").read_text())
    pngs = np.stack([images.load_png(run_dir / c["image"]) for c in summary["classes"]])
    lp = np.asarray(scoring.score(clf.logits, params, jnp.asarray(pngs)))
    for i, c in enumerate(summary["classes"]):
        assert np.exp(np.float64(lp[i, c["index"]])) == pytest.approx(c["confidence"], rel=1e-5)


def test_same_seed_gives_the_same_summary(run_dir, tmp_path):
    res = fool(*SMALL, f"--out={tmp_path / 'b'}")
    assert res.returncode == 0, res.stderr
    first = json.loads((run_dir / "summary.json").read_text())
    second = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert [c["log_prob"] for c in first["classes"]] == [c["log_prob"] for c in second["classes"]]


def test_never_overwrites_a_run_silently(run_dir):
    before = (run_dir / "summary.json").read_bytes()
    res = fool(*SMALL, f"--out={run_dir}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("fool.py: error:")
    assert "already holds a run" in res.stderr
    assert (run_dir / "summary.json").read_bytes() == before


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--population=7", "--population"),
        ("--generations=-1", "--generations"),
        ("--classes=3,12", "--classes"),
        ("--classes=a", "--classes"),
        ("--encoding=pixels", "--encoding"),
        ("--model=resnet", "--model"),
        ("--model=lenet_paper", "no default weights"),
        ("--weights=/nonexistent/w.npz", "/nonexistent/w.npz"),
        ("--mean=/nonexistent/mean.binaryproto", "/nonexistent/mean.binaryproto"),
        ("--mutation_schedule=cosine", "--mutation_schedule"),
        ("--crossover_rate=1.5", "--crossover_rate"),
        ("--max_nodes=3", "--encoding=cppn: max_nodes"),
        ("--noten_crop", "--noten_crop"),
        ("--direct_genes=float16", "--direct_genes"),
        ("--coordinator_address=localhost:1234", "go together"),
        ("--num_processes=2 --process_id=2 --coordinator_address=h:1", "--process_id"),
    ],
)
def test_bad_flags_give_one_line_errors(flag, message, tmp_path):
    res = fool(*flag.split(), f"--out={tmp_path / 'x'}")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("fool.py: error:") and message in lines[0]
    assert not (tmp_path / "x").exists()


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    res = fool(f"--weights={bad}", f"--out={tmp_path / 'x'}")
    assert res.returncode == 2 and str(bad) in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_shipped_weights_registry_entry():
    assert classifiers.MODELS["lenet"].default_weights.is_file()


RENDER = [sys.executable, str(REPO / "experiments" / "render.py")]


def test_default_run_is_cppn_and_genomes_rerender_exactly(run_dir, tmp_path):
    """Acceptance: a saved elite re-rendered at the native size equals the archived image."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["encoding"] == "cppn"
    res = script_runner.run(
        RENDER + [f"--out={tmp_path / 'n'}", str(run_dir)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    for c in summary["classes"]:
        stem = Path(c["genome"]).stem
        again = images.load_png(tmp_path / "n" / f"{stem}_28.png")
        np.testing.assert_array_equal(again, images.load_png(run_dir / c["image"]))
    genome = run_dir / summary["classes"][0]["genome"]
    res = script_runner.run(
        RENDER + ["--size=96", f"--out={tmp_path / 'big'}", str(genome)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    big = images.load_png(tmp_path / "big" / f"{genome.stem}_96.png")
    assert big.shape == (96, 96, 1) and big.dtype == np.uint8
    # refuses to overwrite, and names a missing file in one line
    res = script_runner.run(
        RENDER + ["--size=96", f"--out={tmp_path / 'big'}", str(genome)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "exists" in res.stderr
    res = script_runner.run(RENDER + [str(tmp_path / "nope.npz")], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_direct_run_and_fixed_resolution(tmp_path):
    out = tmp_path / "d"
    res = fool("--encoding=direct", *SMALL, f"--out={out}")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["encoding"] == "direct"
    genome = out / summary["classes"][0]["genome"]
    res = script_runner.run(RENDER + ["--size=56", str(genome)], capture_output=True, text=True)
    assert res.returncode == 2 and "one resolution" in res.stderr


def test_dense_cppn_run_rerenders_exactly_and_at_any_size(tmp_path):
    out = tmp_path / "dense"
    res = fool(
        "--encoding=dense_cppn", "--dense_layers=2", "--dense_width=6", *SMALL, f"--out={out}"
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["encoding"] == "dense_cppn"
    genome = out / summary["classes"][0]["genome"]
    for size in (28, 56):
        res = script_runner.run(
            RENDER + [f"--size={size}", f"--out={tmp_path / 'png'}", str(genome)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
    again = images.load_png(tmp_path / "png" / f"{genome.stem}_28.png")
    np.testing.assert_array_equal(again, images.load_png(out / summary["classes"][0]["image"]))
    assert images.load_png(tmp_path / "png" / f"{genome.stem}_56.png").shape == (56, 56, 1)


def test_class_lists_parse_once_for_every_tool():
    from jaxfool import runs

    assert runs.parse_classes("0,3,7-9", 10) == (0, 3, 7, 8, 9)
    assert runs.parse_classes(None, 4) == (0, 1, 2, 3)
    for bad, message in [("3,12", "outside"), ("a", "not an index"), ("1,1", "twice")]:
        with pytest.raises(ValueError, match=message):
            runs.parse_classes(bad, 10)


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    """Defect: a folder with its own config.json counted as a run and was wiped by --overwrite."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"mine": true}')
    (project / "data.csv").write_text("1,2,3")
    res = fool(*SMALL, f"--out={project}", "--overwrite")
    assert res.returncode == 2 and "not a jaxfool run" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in project.iterdir()) == ["config.json", "data.csv"]


def test_overwrite_replaces_only_the_runs_own_files(run_dir, tmp_path):
    out = tmp_path / "again"
    assert fool(*SMALL, "--generations=2", f"--out={out}").returncode == 0
    (out / "notes.md").write_text("my notes")
    res = fool(*SMALL, "--generations=3", f"--out={out}", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert (out / "notes.md").read_text() == "my notes"
    assert json.loads((out / "summary.json").read_text())["generations_completed"] == 3


def test_nan_classifier_exits_3_with_outputs(tmp_path):
    """Defect: weights with a NaN bias crashed in the output writers (rc 1, no summary)."""
    from jaxfool.base import npz

    tree, meta = npz.load_params(REPO / "models" / "lenet_mnist.npz")
    tree["params"]["ip2"]["bias"] = np.full_like(tree["params"]["ip2"]["bias"], np.nan)
    weights = npz.save_params(tmp_path / "nan.npz", tree, meta)
    out = tmp_path / "run"
    res = fool(*SMALL, f"--weights={weights}", f"--out={out}")
    assert res.returncode == 3, res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "NaN" in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped: NaN scores" and summary["classes"] == []
    assert (out / "checkpoint" / "state.npz").exists()


def test_resume_keeps_log_every_and_checkpoint_every(tmp_path):
    """Defect: --resume dropped --checkpoint_every and --log_every (it logged every 25)."""
    out = tmp_path / "run"
    first = fool(*SMALL, "--generations=6", "--log_every=3", "--checkpoint_every=3", f"--out={out}")
    assert first.returncode == 0, first.stderr
    res = fool(f"--resume={out}", "--generations=12")
    assert res.returncode == 0, res.stderr
    gens = [json.loads(x)["generation"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert gens == [3, 6, 9, 12]
    saved = json.loads((out / "config.json").read_text())["flags"]
    assert (saved["log_every"], saved["checkpoint_every"], saved["generations"]) == (3, 3, 12)
