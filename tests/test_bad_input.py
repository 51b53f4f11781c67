"""Bad input: the library's messages for damaged files (fast unit tests), then a sweep over
every experiment script: each file flag given a missing, empty, truncated or random-bytes
file, each numeric flag an invalid value. Every case must end the script with exit code 2
and exactly one stderr line `NAME.py: error: ...` that names the flag or the file, without a
traceback, and leave every file around it (a previous run, an output directory with a
sentinel, the inputs) byte-for-byte as it was, even when --overwrite is given.

The sweep (marked slow: about 180 commands) runs its cases two at a time from one module
fixture; each case is then its own test, and `-k` runs only the cases it picks. Cases are
chosen to fail while flags and files are checked (seconds each); the sizes given alongside
keep a case that wrongly succeeds short too.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from jaxfool.base.errors import RunDirError

from . import script_runner
from .conftest import REPO

SCRIPTS = REPO / "experiments"
LENET = REPO / "models" / "lenet_mnist.npz"
PHOTO = REPO / "tests" / "data" / "photos" / "coffee.png"
MNIST = REPO / "jaxfool" / "classifiers" / "data" / "mnist-10k"
MNIST_IMAGES = "train-images-idx3-ubyte.gz"
KINDS = ("missing", "empty", "truncated", "random")
TIMEOUT = 120  # a case that has not failed by then counts as not failing


@dataclass(frozen=True)
class Case:
    """One bad command line. `args` may hold {bad} (the damaged file or directory), {prev}
    (a previous run, with a sentinel file), {outdir} (an output directory holding a sentinel
    and a PNG), {fresh} (a path that must not come into being); `source` says what {bad} is
    made from, `kind` how it is damaged; stderr must name one of `mention`."""

    script: str
    name: str
    args: tuple[str, ...]
    source: str | None = None
    kind: str | None = None
    mention: tuple[str, ...] = ("{bad}",)

    @property
    def id(self) -> str:
        return f"{self.script}-{self.name}"


def files(script, flag, source, suffix, base=(), template="--{flag}={{bad}}", kinds=KINDS):
    """The four damaged-file cases (or `kinds`) of a file flag; `flag` also names the cases
    (a second set for the same flag is told apart by a suffix, 'weights-pth')."""
    arg = template.format(flag=flag.split("-")[0])
    return [
        Case(script, f"{flag}-{kind}", (*base, arg), f"{source}{suffix}", kind, ("{bad}",))
        for kind in kinds
    ]


def numbers(script, flag, values, base=()):
    """One case per invalid value of a numeric flag; stderr must name the flag."""
    return [
        Case(script, f"{flag}={v}", (*base, f"--{flag}={v}"), mention=(f"--{flag}",))
        for v in values
    ]


# --- the library's messages ---------------------------------------------------------------------


def save_with_meta(path: Path, meta: np.ndarray) -> Path:
    np.savez(path, **{"a": np.zeros(3), "__meta__": meta})
    return path


@pytest.mark.parametrize(
    "meta",
    [b"{not json", b"\xff\xfe", b"[1, 2]", np.zeros(3, np.float32)],
    ids=["not-json", "not-utf8", "not-an-object", "not-bytes"],
)
def test_corrupt_meta_entry_is_a_weights_file_error(tmp_path, meta):
    from jaxfool.base import npz

    entry = np.frombuffer(meta, np.uint8) if isinstance(meta, bytes) else meta
    path = save_with_meta(tmp_path / "w.npz", entry)
    with pytest.raises(npz.WeightsFileError, match="__meta__") as e:
        npz.load_params(path)
    assert str(path) in str(e.value)


def npz_impostors(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not .npz archives, with the words their error must hold."""
    real = LENET.read_bytes()
    made = {
        "random": (np.random.default_rng(0).bytes(1000), "not an .npz file"),
        "empty": (b"", "empty file"),
        "truncated": (real[:100], "truncated"),
        "half": (real[: len(real) // 2], "truncated"),
        "text": (b"hello, world\n", "not an .npz file"),
        "pickle": (b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.", "not an .npz file"),
    }
    out = {}
    for name, (data, words) in made.items():
        (tmp_path / f"{name}.npz").write_bytes(data)
        out[name] = (tmp_path / f"{name}.npz", words)
    np.save(tmp_path / "array.npy", np.zeros(3))
    out["npy"] = (tmp_path / "array.npy", "single .npy array")
    return out


def test_files_that_are_not_npz_get_a_clear_message(tmp_path):
    from jaxfool.base import npz

    for name, (path, words) in npz_impostors(tmp_path).items():
        with pytest.raises(npz.WeightsFileError) as e:
            npz.load_params(path)
        message = str(e.value)
        assert message.startswith(f"{path}: ") and words in message, (name, message)
        reason = message[len(str(path)) :]
        assert "pickle" not in reason and "\n" not in reason, (name, message)


def test_pickled_entry_is_refused_by_name(tmp_path):
    from jaxfool.base import npz

    path = tmp_path / "objects.npz"
    np.savez(path, good=np.zeros(2), evil=np.array([{"x": 1}], dtype=object))
    with pytest.raises(npz.WeightsFileError, match="entry 'evil' holds pickled Python objects"):
        npz.load_params(path)


def test_missing_checkpoint_says_the_run_never_reached_one(tmp_path):
    from jaxfool import runs

    (tmp_path / "run").mkdir()
    with pytest.raises(RunDirError) as e:
        runs.store.load_checkpoint(tmp_path / "run", {})
    assert str(e.value) == (
        f"{tmp_path / 'run'}: no checkpoint/state.npz (the run never reached its first checkpoint)"
    )
    with pytest.raises(RunDirError, match="no such run directory"):
        runs.store.load_checkpoint(tmp_path / "nope", {})


def test_checkpoint_without_loop_key_is_a_run_dir_error(tmp_path):
    from jaxfool import runs
    from jaxfool.base import npz

    npz.save_params(tmp_path / "checkpoint" / "state.npz", {"state": {"x": np.zeros(2)}})
    with pytest.raises(RunDirError, match="not a jaxfool checkpoint"):
        runs.store.load_checkpoint(tmp_path, {"x": np.zeros(2)})


@pytest.mark.parametrize(
    "text, message",
    [
        ("5-3", "'5-3': empty range (5 > 3)"),
        ("0,9-2", "'9-2': empty range (9 > 2)"),
        ("3-", "'3-' is not an index or a range a-b"),
        ("1,,2", "'' is not an index or a range a-b"),
        ("-1", "[-1] outside 0..9"),
        ("2,1-3", "an index appears twice"),
    ],
)
def test_parse_classes_errors(text, message):
    from jaxfool import runs

    with pytest.raises(ValueError) as e:
        runs.parse_classes(text, 10)
    assert str(e.value) == message


def test_parse_classes_ranges():
    from jaxfool import runs

    assert runs.parse_classes("0,3,7-9", 10) == (0, 3, 7, 8, 9)
    assert runs.parse_classes("4-4", 10) == (4,)
    assert runs.parse_classes(" ", 3) == (0, 1, 2)


def test_efficientnet_crop_of_images_one_pixel_wide():
    """TF's crop side would be 0; the central pixel is kept and resized like any crop."""
    import jax.numpy as jnp

    from jaxfool.classifiers import preprocess

    assert preprocess.efficientnet_center_crop_box(1, 1) == (0, 0, 1)
    assert preprocess.efficientnet_center_crop_box(1, 7) == (0, 3, 1)
    assert preprocess.efficientnet_center_crop_box(2, 2) == (1, 1, 1)
    pixel = jnp.asarray([[[[10, 200, 127]]]], jnp.uint8)
    for resize in ("tf", "jax"):
        x = np.asarray(preprocess.efficientnet_eval_crop(pixel, resize=resize))
        assert x.shape == (1, 224, 224, 3)
        want = np.broadcast_to([-117 / 128, 73 / 128, 0], x.shape)
        np.testing.assert_allclose(x, want, atol=1e-5)
    wide = jnp.asarray(np.arange(21, dtype=np.uint8).reshape(1, 1, 7, 3))
    x = np.asarray(preprocess.efficientnet_eval_crop(wide))
    np.testing.assert_allclose(x[0, 0, 0], (np.asarray([9, 10, 11]) - 127) / 128, atol=1e-5)


def cli_run(script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPTS / f"{script}.py"), *args]
    return script_runner.run(cmd, capture_output=True, text=True, timeout=300)


def one_error_line(res: subprocess.CompletedProcess, script: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"{script}.py: error: ") and "Traceback" not in res.stderr
    return lines[0]


@pytest.mark.parametrize("model", ["lenet", "efficientnet_lite0"])
def test_classify_a_one_pixel_image(tmp_path, model):
    from PIL import Image

    from jaxfool import classifiers

    if classifiers.MODELS[model].default_weights is None:
        pytest.skip(f"{model} needs its weights (the [imagenet] extra)")
    for shape in ((1, 1, 3), (1, 5, 3)):
        Image.fromarray(np.full(shape, 90, np.uint8)).save(tmp_path / f"{shape[1]}.png")
    res = cli_run(
        "classify", f"--model={model}", "--json", str(tmp_path / "1.png"), str(tmp_path / "5.png")
    )
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["top"] == rows[1]["top"]  # both are one grey


def cppn_genome(path: Path) -> Path:
    """A random CPPN genome file as fool.py writes elites (28 x 28 grey)."""
    import jax

    from jaxfool import runs
    from jaxfool.base import npz
    from jaxfool.search import encodings
    from jaxfool.search.encodings.cppn import CppnEncoding

    enc = CppnEncoding(image_shape=(28, 28, 1))
    genome = jax.tree.map(np.asarray, runs.store._as_dict(enc.init_one(jax.random.key(0))))
    return npz.save_params(path, {"genome": genome}, {"encoding": encodings.to_spec(enc)})


def test_render_out_naming_a_file(tmp_path):
    genome = cppn_genome(tmp_path / "g.npz")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me\n")
    for out in (blocker, blocker / "sub"):
        line = one_error_line(cli_run("render", f"--out={out}", str(genome)), "render")
        assert f"--out={out}" in line and "not a directory" in line
    assert blocker.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz", "notes.txt"]


def test_render_checks_every_genome_before_writing(tmp_path):
    """A bad genome after a good one: nothing is written, an existing PNG is not replaced."""
    genome = cppn_genome(tmp_path / "g.npz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "g_28.png").write_bytes(b"an earlier render")
    (tmp_path / "bad.npz").write_bytes(b"")
    res = cli_run("render", f"--out={out}", "--overwrite", str(genome), str(tmp_path / "bad.npz"))
    assert "bad.npz: empty file" in one_error_line(res, "render")
    assert (out / "g_28.png").read_bytes() == b"an earlier render"


# --- the cases, per script ------------------------------------------------------------------------

CLASSIFY = (
    files("classify", "weights", "lenet", ".npz", ("--model=lenet", str(PHOTO)))
    + files("classify", "weights-pth", "pth", ".pth", ("--model=efficientnet_lite0", str(PHOTO)))
    + files("classify", "mean", "npy", ".npy", ("--model=lenet", str(PHOTO)))
    + files(
        "classify",
        "mean-binaryproto",
        "random",
        ".binaryproto",
        ("--model=lenet", str(PHOTO)),
        kinds=("empty", "random"),
    )
    + files(
        "classify",
        "image",
        "png",
        ".png",
        ("--model=lenet",),
        template="{{bad}}",
        kinds=(*KINDS, "directory"),
    )
    + numbers("classify", "top", ["0", "-1", "x"], ("--model=lenet", str(PHOTO)))
)

RENDER_BASE = ("--out={outdir}", "--overwrite", "{prev}/elites/0000_0.npz")
RENDER = (
    files(
        "render",
        "genome",
        "genome",
        ".npz",
        RENDER_BASE,
        template="{{bad}}",
        kinds=(*KINDS, "directory"),
    )
    + numbers("render", "size", ["0", "-3", "1", "x"], RENDER_BASE)
    + [
        Case(
            "render", "out-is-a-file", ("--out={outdir}/sentinel.txt", "{prev}"), mention=("--out",)
        ),
        Case(
            "render",
            "out-under-a-file",
            ("--out={outdir}/sentinel.txt/sub", "{prev}"),
            mention=("--out",),
        ),
        Case("render", "png-exists", ("--out={outdir}", "{prev}"), mention=("0000_0_28.png",)),
    ]
)

TRANSFER_BASE = ("--runs={prev}", "--models=lenet", "--out={fresh}")
TRANSFER = (
    files("transfer", "models", "lenet", ".npz", TRANSFER_BASE, "--models=lenet:{{bad}}")
    + files(
        "transfer",
        "models-mean",
        "npy",
        ".npy",
        TRANSFER_BASE,
        f"--models=lenet:{LENET}:{{{{bad}}}}",
    )
    + files("transfer", "runs-summary", "run_summary", "", TRANSFER_BASE, "--runs={{bad}}")
    + files("transfer", "runs-png", "run_png", "", TRANSFER_BASE, "--runs={{bad}}")
    + [
        Case("transfer", "runs-missing", (*TRANSFER_BASE, "--runs={fresh}2"), mention=("--runs",)),
        Case(
            "transfer",
            "runs-a-file",
            (*TRANSFER_BASE, "--runs={outdir}/sentinel.txt"),
            mention=("--runs",),
        ),
        Case("transfer", "out-not-empty", (*TRANSFER_BASE, "--out={outdir}"), mention=("--out",)),
        Case(
            "transfer",
            "out-is-a-file",
            (*TRANSFER_BASE, "--out={outdir}/sentinel.txt"),
            mention=("--out",),
        ),
        Case(
            "transfer",
            "out-under-a-file",
            (*TRANSFER_BASE, "--out={outdir}/sentinel.txt/x"),
            mention=("--out",),
        ),
    ]
    + numbers("transfer", "threshold", ["0", "-0.5", "1.5", "x"], TRANSFER_BASE)
    + numbers("transfer", "eval_chunk", ["0", "-1", "x"], TRANSFER_BASE)
)

ASCENT_BASE = ("--steps=1", "--classes=0", "--out={prev}", "--overwrite")
GRADIENT_ASCENT = (
    files("gradient_ascent", "weights", "lenet", ".npz", ASCENT_BASE)
    + files("gradient_ascent", "mean", "npy", ".npy", ASCENT_BASE)
    + [
        Case(
            "gradient_ascent",
            "out-is-a-file",
            (*ASCENT_BASE, "--out={outdir}/sentinel.txt"),
            mention=("--out", "sentinel.txt"),
        ),
        Case(
            "gradient_ascent",
            "out-under-a-file",
            (*ASCENT_BASE, "--out={outdir}/sentinel.txt/x"),
            mention=("--out", "sentinel.txt"),
        ),
    ]
    + numbers("gradient_ascent", "learning_rate", ["-1", "x"], (*ASCENT_BASE, "--optimizer=adam"))
    + numbers("gradient_ascent", "steps", ["0", "-1", "x"], ASCENT_BASE)
    + numbers("gradient_ascent", "stop_at", ["0", "1.5", "-1"], ASCENT_BASE)
    + numbers("gradient_ascent", "seed", ["-1"], ASCENT_BASE)
    + numbers("gradient_ascent", "log_every", ["0"], ASCENT_BASE)
)

LENET_BASE = ("--steps=1", "--out={outdir}/weights.npz", "--overwrite")
TRAIN_LENET = (
    files("train_lenet", "data_dir", "mnist", "", LENET_BASE)
    + [
        Case(
            "train_lenet",
            "data_dir-missing-dir",
            (*LENET_BASE, "--data_dir={fresh}"),
            mention=("--data_dir",),
        ),
        Case(
            "train_lenet",
            "data_dir-a-file",
            (*LENET_BASE, "--data_dir={outdir}/sentinel.txt"),
            mention=("--data_dir",),
        ),
        Case(
            "train_lenet", "out-is-a-directory", (*LENET_BASE, "--out={outdir}"), mention=("--out",)
        ),
        Case(
            "train_lenet",
            "out-under-a-file",
            (*LENET_BASE, "--out={outdir}/sentinel.txt/w.npz"),
            mention=("--out",),
        ),
        Case(
            "train_lenet",
            "out-exists",
            ("--steps=1", "--out={outdir}/weights.npz"),
            mention=("--out",),
        ),
    ]
    + numbers("train_lenet", "steps", ["0", "-1", "x"], LENET_BASE)
    + numbers("train_lenet", "batch_size", ["0", "-8"], LENET_BASE)
    + numbers("train_lenet", "log_every", ["0"], LENET_BASE)
    + numbers("train_lenet", "seed", ["-1", "1.5"], LENET_BASE)
)

FOOL_BASE = ("--population=2", "--generations=1", "--classes=0", "--out={prev}", "--overwrite")
FOOL = (
    files("fool", "weights", "lenet", ".npz", FOOL_BASE)
    + files("fool", "mean", "npy", ".npy", FOOL_BASE)
    + files("fool", "resume", "run_checkpoint", "", (), "--resume={{bad}}")
    + [
        Case("fool", "resume-missing-dir", ("--resume={fresh}",), mention=("--resume", "{fresh}")),
        Case(
            "fool",
            "out-is-a-file",
            (*FOOL_BASE, "--out={outdir}/sentinel.txt"),
            mention=("--out", "sentinel.txt"),
        ),
        Case(
            "fool",
            "out-under-a-file",
            (*FOOL_BASE, "--out={outdir}/sentinel.txt/x"),
            mention=("--out", "sentinel.txt"),
        ),
        Case("fool", "out-not-a-run", (*FOOL_BASE, "--out={outdir}"), mention=("{outdir}",)),
    ]
    + numbers("fool", "population", ["0", "3", "-2", "x"], FOOL_BASE)
    + numbers("fool", "initial_population", ["0"], FOOL_BASE)
    + numbers("fool", "generations", ["-1"], FOOL_BASE)
    + numbers("fool", "seed", ["-1"], FOOL_BASE)
    + numbers("fool", "log_every", ["0"], FOOL_BASE)
    + numbers("fool", "checkpoint_every", ["-1"], FOOL_BASE)
    + numbers("fool", "eval_chunk", ["0"], FOOL_BASE)
    + numbers("fool", "num_processes", ["0"], FOOL_BASE)
    + numbers("fool", "process_id", ["-1"], FOOL_BASE)
    + numbers("fool", "mutation_rate", ["-0.1", "1.5", "x"], FOOL_BASE)
    + numbers("fool", "crossover_rate", ["2"], FOOL_BASE)
    + numbers("fool", "max_nodes", ["0"], FOOL_BASE)
    + numbers("fool", "max_edges", ["0"], FOOL_BASE)
    + numbers("fool", "dense_layers", ["0"], FOOL_BASE)
    + numbers("fool", "dense_width", ["-1"], FOOL_BASE)
    + numbers("fool", "dense_input_scale", ["0", "x"], FOOL_BASE)
)

RETRAIN_BASE = (
    "--out={fresh}",
    "--iterations=1",
    "--runs_per_iteration=2",
    "--population=2",
    "--generations=1",
    "--train_steps=1",
    "--log_every=1",
)
RETRAIN_FOLDER = (*RETRAIN_BASE, "--dataset=folder", "--encoding=cppn", "--data_dir={outdir}")
RETRAIN = (
    files("retrain", "dnn1", "lenet", ".npz", RETRAIN_BASE)
    + files("retrain", "data_dir", "mnist", "", RETRAIN_BASE)
    + files("retrain", "mean", "npy", ".npy", (*RETRAIN_FOLDER, "--arch=caffenet"))
    + [
        Case(
            "retrain",
            "data_dir-missing-dir",
            (*RETRAIN_BASE, "--data_dir={fresh}2"),
            mention=("--data_dir",),
        ),
        Case("retrain", "out-not-empty", (*RETRAIN_BASE, "--out={outdir}"), mention=("--out",)),
        Case(
            "retrain",
            "out-under-a-file",
            (*RETRAIN_BASE, "--out={outdir}/sentinel.txt/x"),
            mention=("--out", "sentinel.txt"),
        ),
    ]
    + numbers("retrain", "iterations", ["-1", "x"], RETRAIN_BASE)
    + numbers("retrain", "runs_per_iteration", ["0"], RETRAIN_BASE)
    + numbers("retrain", "holdout_runs", ["-1", "2"], RETRAIN_BASE)
    + numbers("retrain", "population", ["3", "0"], RETRAIN_BASE)
    + numbers("retrain", "generations", ["0"], RETRAIN_BASE)
    + numbers("retrain", "log_every", ["0"], RETRAIN_BASE)
    + numbers("retrain", "train_steps", ["0"], RETRAIN_BASE)
    + numbers("retrain", "batch_size", ["0"], RETRAIN_BASE)
    + numbers("retrain", "seed", ["-1"], RETRAIN_BASE)
    + numbers("retrain", "thresholds", ["x", "1.5"], RETRAIN_BASE)
    + numbers("retrain", "image_size", ["4"], RETRAIN_FOLDER)
    + numbers("retrain", "base_lr", ["-0.01", "x"], RETRAIN_FOLDER)
    + numbers("retrain", "lr_stepsize", ["0"], RETRAIN_FOLDER)
    + numbers("retrain", "probe_runs", ["0"], (*RETRAIN_BASE, "--probe_emitter=isoline"))
    + [Case("retrain", "resume-not-a-run", ("--resume={outdir}",), mention=("--resume",))]
)

BENCH_BASE = ("--suite=custom", "--population=2", "--generations=1", "--repeats=1")
BENCHMARK = (
    files("benchmark", "weights", "lenet", ".npz", BENCH_BASE)
    + numbers("benchmark", "repeats", ["0", "x"], BENCH_BASE)
    + numbers("benchmark", "eval_chunk", ["0"], BENCH_BASE)
    + numbers("benchmark", "population", ["3", "0"], BENCH_BASE)
    + numbers("benchmark", "generations", ["0"], BENCH_BASE)
)

CASES = CLASSIFY + RENDER + TRANSFER + GRADIENT_ASCENT + TRAIN_LENET + FOOL + RETRAIN + BENCHMARK
assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


# --- making the damaged files ---------------------------------------------------------------------


def cut_short(data: bytes) -> bytes:
    return data[: min(100, len(data) // 2)]


def damage(path: Path, kind: str, source: Path | None) -> None:
    """Turns `path` into a `kind` of bad file: gone, empty, cut short (at 100 bytes, or half
    a file smaller than 200), random bytes, or an empty directory."""
    if path.is_file():
        path.unlink()
    if kind == "missing":
        return
    if kind == "directory":
        path.mkdir()
        return
    data = {
        "empty": b"",
        "truncated": cut_short(source.read_bytes()) if source else b"",
        "random": np.random.default_rng(0).bytes(4096),
    }[kind]
    path.write_bytes(data)


def make_bad(ws: Path, case: Case, sources: dict[str, Path]) -> Path:
    """The bad file or directory of `case`, inside workspace `ws`."""
    source, kind = case.source, case.kind
    if source == "mnist":  # a copy of the bundled MNIST with its train images damaged
        bad = ws / "mnist"
        shutil.copytree(MNIST, bad)
        damage(bad / MNIST_IMAGES, kind, MNIST / MNIST_IMAGES)
        return bad
    if source.startswith("run_"):  # a copy of a real run with one of its files damaged
        bad = ws / "damaged_run"
        shutil.copytree(sources["run"], bad)
        rel = {
            "run_summary": "summary.json",
            "run_png": "elites/0000_0.png",
            "run_checkpoint": "checkpoint/state.npz",
        }[source]
        damage(bad / rel, kind, sources["run"] / rel)
        return bad
    stem, suffix = os.path.splitext(source)
    bad = ws / f"bad_{stem}{suffix}"
    damage(bad, kind, sources.get(stem))
    return bad


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under `root`."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@dataclass
class Outcome:
    returncode: int | None
    stderr: str
    mention: tuple[str, ...]
    changed: list[str]


def run_case(
    case: Case, root: Path, sources: dict[str, Path], runner: script_runner.ScriptRunner
) -> Outcome:
    """Builds the case's workspace, runs the script, and reports what changed there."""
    ws = root / case.id
    ws.mkdir()
    prev, outdir = ws / "prev", ws / "outdir"
    shutil.copytree(sources["run"], prev)
    (prev / "sentinel.txt").write_text("a file the run did not write\n")
    outdir.mkdir()
    (outdir / "sentinel.txt").write_text("keep me\n")
    (outdir / "0000_0_28.png").write_bytes(b"an earlier render")
    (outdir / "weights.npz").write_bytes(LENET.read_bytes())
    bad = make_bad(ws, case, sources) if case.source else None
    names = {"bad": bad, "prev": prev, "outdir": outdir, "fresh": ws / "fresh"}
    args = [a.format(**names) for a in case.args]
    before = snapshot(ws)
    code, _, stderr = runner.run([SCRIPTS / f"{case.script}.py", *args], cwd=ws, timeout=TIMEOUT)
    if code is None:
        stderr = f"still running after {TIMEOUT} s; {stderr}"
    after = snapshot(ws)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    mention = tuple(m.format(**names) for m in case.mention)
    return Outcome(code, stderr, mention, changed)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Real files to damage: a tiny fool.py run (its elites and checkpoint), the shipped LeNet,
    a photo, a LeNet mean .npy, the EfficientNet-Lite0 .pth when installed."""
    root = tmp_path_factory.mktemp("sources")
    run = root / "run"
    cmd = [
        sys.executable,
        str(SCRIPTS / "fool.py"),
        "--population=4",
        "--generations=1",
        "--log_every=1",
        "--classes=0,1",
        f"--out={run}",
    ]
    res = script_runner.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    np.save(root / "mean.npy", np.zeros((1, 28, 28), np.float32))
    found = {
        "run": run,
        "genome": run / "elites" / "0000_0.npz",
        "lenet": LENET,
        "png": PHOTO,
        "npy": root / "mean.npy",
    }
    from jaxfool import classifiers

    pth = classifiers.MODELS["efficientnet_lite0"].default_weights
    if pth is not None:
        found["pth"] = pth
    return found


def selected(session) -> set[str]:
    """The ids of the cases this session runs (all, or those that -k picked)."""
    # Other test modules parametrize a "case" too (with strings): take only this sweep's Cases.
    return {
        item.callspec.params["case"].id
        for item in session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    }


@pytest.fixture(scope="module")
def outcomes(sources, tmp_path_factory, request):
    """Every selected case run once, two at a time."""
    root = tmp_path_factory.mktemp("cases")
    wanted = selected(request.session)
    runnable = [c for c in CASES if c.id in wanted and (c.source != "pth.pth" or "pth" in sources)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    runners = queue.Queue()
    for _ in range(2):
        runners.put(script_runner.ScriptRunner(env))

    def outcome(case):
        runner = runners.get()
        try:
            return case.id, run_case(case, root, sources, runner)
        finally:
            runners.put(runner)

    try:
        with ThreadPoolExecutor(2) as pool:
            return dict(pool.map(outcome, runnable))
    finally:
        while not runners.empty():
            runners.get().close()


def problems(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with how the script took the bad input (nothing, if all is well)."""
    lines = outcome.stderr.strip().splitlines()
    found = []
    if outcome.returncode != 2:
        found.append(f"exit code {outcome.returncode}, not 2")
    if len(lines) != 1 or not lines[0].startswith(f"{case.script}.py: error: "):
        found.append(f"{len(lines)} stderr lines, not one '{case.script}.py: error: ...'")
    if "Traceback" in outcome.stderr:
        found.append("a traceback")
    if lines and not any(m in outcome.stderr for m in outcome.mention):
        found.append(f"stderr names none of {outcome.mention}")
    if outcome.changed:
        found.append(f"changed files: {outcome.changed[:5]}")
    return found


def params() -> list:
    """The cases as pytest params, named by script and case."""
    return [pytest.param(case, id=case.id) for case in CASES]


@pytest.mark.slow
@pytest.mark.parametrize("case", params())
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, outcomes):
    if case.id not in outcomes:
        pytest.skip("needs the EfficientNet-Lite0 weights (the [imagenet] extra)")
    outcome = outcomes[case.id]
    found = problems(case, outcome)
    tail = "\n".join(outcome.stderr.strip().splitlines()[-3:])
    assert not found, f"{'; '.join(found)}\nstderr (last lines):\n{tail}"


def test_sixteen_bit_gray_folder_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from jaxfool.classifiers.data.folder import load_images

    path = tmp_path / "wide.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 15).astype(np.uint16)).save(path)
    image = load_images([path], 64)[0, ..., 0]
    expected = np.round(np.arange(64 * 64).reshape(64, 64) * 15 / 257)
    assert np.abs(image.astype(int) - expected).max() <= 1  # was 255 almost everywhere


def test_random_bytes_npy_mean_names_the_file_without_numpy_pickle_text(tmp_path):
    from jaxfool.classifiers.weights.caffemodel import CaffeFormatError, caffe_mean_image

    bad = tmp_path / "mean.npy"
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(CaffeFormatError) as e:
        caffe_mean_image(bad, (28, 28, 1))
    assert str(bad) in str(e.value) and "allow_pickle" not in str(e.value)


def test_genome_file_with_a_non_dict_encoding_is_a_clear_error(tmp_path):
    from jaxfool import runs
    from jaxfool.base import npz

    path = npz.save_params(tmp_path / "g.npz", {"genome": np.zeros(3)}, {"encoding": [1, 2]})
    with pytest.raises(npz.WeightsFileError, match="bad encoding description"):
        runs.store.load_genome(path)
