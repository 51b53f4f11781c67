"""Run directories: --overwrite removes only the files a run recorded, never anything else."""

import json

import pytest

from jaxfool.base.errors import RunDirError
from jaxfool.runs.rundir import MANIFEST, RunDir


def make_run(path, files=("config.json", "summary.json", "elites/0000_0.png")):
    run = RunDir.create(path)
    for rel in files:
        run.record(path / rel)
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(rel)
    return run


def test_a_folder_with_a_config_json_is_not_a_run_and_is_never_deleted(tmp_path):
    """Defect: any directory holding config.json counted as a run and was wiped whole."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text("{}")
    (project / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match="not a jaxfool run.*config.json, notes.txt"):
            RunDir.create(project, overwrite=overwrite)
    assert sorted(p.name for p in project.iterdir()) == ["config.json", "notes.txt"]


def test_overwrite_removes_the_runs_files_and_keeps_the_users(tmp_path):
    out = tmp_path / "run"
    make_run(out)
    (out / "my_analysis.ipynb").write_text("keep me")
    (out / "elites" / "favourite.png").write_text("keep me too")
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir.create(out)
    run = RunDir.create(out, overwrite=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "elites", "elites/favourite.png", MANIFEST, "my_analysis.ipynb",
    ]  # fmt: skip
    assert run.files == []


def test_overwrite_removes_emptied_subdirectories(tmp_path):
    out = tmp_path / "run"
    make_run(out, ("checkpoint/state.npz", "elites/a.png"))
    RunDir.create(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]


def test_a_manifest_cannot_delete_outside_its_run(tmp_path):
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    victim.write_text("precious")
    make_run(out)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"] += ["../victim.txt", str(victim)]
    (out / MANIFEST).write_text(json.dumps(manifest))
    RunDir.create(out, overwrite=True)
    assert victim.read_text() == "precious"


def test_out_under_a_regular_file_is_a_clear_error(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        RunDir.create(file)
    with pytest.raises(RunDirError, match=r"a parent of .*is a file"):
        RunDir.create(file / "sub")
    assert file.read_text() == "x"


def test_corrupt_manifest_is_refused_not_trusted(tmp_path):
    out = tmp_path / "run"
    make_run(out)
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(RunDirError, match="not a jaxfool run manifest"):
        RunDir.create(out, overwrite=True)
    assert (out / "summary.json").exists()


def test_discard_leaves_nothing_of_a_run_that_never_started(tmp_path):
    out = tmp_path / "a" / "run"
    make_run(out).discard()
    assert not out.exists() and (tmp_path / "a").is_dir()
    existing = tmp_path / "mine"
    existing.mkdir()
    make_run(existing).discard()  # the directory was there before: it stays
    assert existing.is_dir() and not any(existing.iterdir())
