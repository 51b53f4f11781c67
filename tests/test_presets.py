"""experiments/configs/*.flags: every preset parses with the script it names, to the values its
lines give, and the MNIST presets run end to end with later flags overriding the file's."""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import pytest

from . import script_runner
from .conftest import PAPER_LENET, REPO, require

CONFIGS = sorted((REPO / "experiments" / "configs").glob("*.flags"))
SCRIPT_LINE = re.compile(r"#\s*script:\s*(\S+)")
FLAG_LINE = re.compile(r"--([a-z_][a-z0-9_]*)(=(.*))?")

# Runs in a subprocess: imports a script by path (its flags only, main does not run), parses
# each flagfile from the defaults and prints {file: {flag: {value, serialized}} or {error}}.
PARSE = r"""
import importlib.util, json, sys
from absl import flags
from jaxfool import classifiers
from jaxfool.base import cli
from jaxfool import runs
script, *files = sys.argv[1:]
spec = importlib.util.spec_from_file_location("preset_script", script)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
FLAGS = flags.FLAGS
result = {}
for path in files:
    FLAGS.unparse_flags()
    try:
        FLAGS(["x", "--flagfile=" + path])
        given = sorted(n for n in cli.given_flags() if n != "flagfile")
        if "classes" in given and "model" in FLAGS:  # the class list fits the model
            mnist = classifiers.MODELS[FLAGS.model].image_shape == classifiers.MNIST_SHAPE
            runs.parse_classes(FLAGS.classes, 10 if mnist else 1000)
        if script.endswith("fool.py"):  # the library validates every value of a run
            from jaxfool import runs
            cli.from_flags(runs.RunConfig)
            cli.from_flags(runs.LoopConfig)
        result[path] = {
            n: {"value": FLAGS[n].value, "serialized": FLAGS[n].serialize()} for n in given
        }
    except Exception as e:
        result[path] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(result))
"""


def header_script(path: Path) -> Path:
    """The script a preset belongs to, from its `# script: experiments/NAME.py` line."""
    for line in path.read_text().splitlines():
        if m := SCRIPT_LINE.match(line):
            return REPO / m.group(1)
    raise AssertionError(f"{path.name}: no '# script: experiments/NAME.py' header line")


def flag_lines(path: Path) -> list[str]:
    """The lines absl reads from a flagfile (not blank, not comments), stripped."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "//"))]


@functools.cache
def parsed(script: Path) -> dict:
    """Every preset of `script` parsed by the script's own flag definitions (one subprocess)."""
    files = [str(p) for p in CONFIGS if header_script(p) == script]
    res = script_runner.run(
        [sys.executable, "-c", PARSE, str(script), *files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_there_are_presets():
    names = {p.name for p in CONFIGS}
    assert {"mnist_direct.flags", "mnist_cppn.flags", "fig8_caffenet.flags"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_preset_parses_with_its_script(path):
    text = path.read_text()
    assert text.startswith("#"), "the header comment comes first"
    script = header_script(path)
    assert script.is_file() and script.parent == REPO / "experiments", script
    lines = flag_lines(path)
    assert lines, "no flags"
    for line in lines:
        assert FLAG_LINE.fullmatch(line), f"{line!r}: not --name=value, --name or --noname"
        assert "#" not in line, f"{line!r}: absl reads an inline comment as part of the value"

    got = parsed(script)[str(path)]
    assert "error" not in got, got.get("error")
    names = []
    for line in lines:
        name, _, text_value = FLAG_LINE.fullmatch(line).groups()
        if name not in got and name.startswith("no") and text_value is None:
            name = name[2:]  # --noname: a boolean set to False
        assert name in got, f"{line!r}: not a flag of {script.name}"
        names.append(name)
        flag = got[name]
        assert flag["serialized"] == line, (flag, line)  # absl writes the line back as given
        if isinstance(flag["value"], bool):
            assert text_value is None, f"{line!r}: write booleans as --name or --noname"
            assert flag["value"] == (name == line[2:]), (name, flag["value"])
        elif isinstance(flag["value"], int | float):
            assert flag["value"] == float(text_value), (name, flag["value"], text_value)
        else:
            assert flag["value"] == text_value, (name, flag["value"], text_value)
    assert len(set(names)) == len(names), "a flag is set twice"
    assert sorted(got) == sorted(names)
    assert "out" not in names, "presets leave --out to the user (each run picks its own)"


def test_presets_hold_the_papers_settings_and_the_docs_name_them():
    """The paper experiments' presets hold exactly the paper's settings (no --out), and every
    preset is listed in experiments/README.md, whose commands name only presets that exist."""
    listing = (REPO / "experiments" / "README.md").read_text()
    presets = {p.name for p in (REPO / "experiments" / "configs").glob("*.flags")}
    assert all(name in listing for name in presets), sorted(p for p in presets if p not in listing)
    named = set(re.findall(r"configs/([\w.-]+\.flags)", listing))
    assert named and named <= presets, sorted(named - presets)

    def flags_of(name):
        return set(flag_lines(REPO / "experiments" / "configs" / name))

    mnist = {"--population=200", "--generations=200", "--seed=0"}
    assert flags_of("mnist_direct.flags") == mnist | {"--model=lenet", "--encoding=direct"}
    assert flags_of("mnist_cppn_paper_lenet.flags") == mnist | {
        "--model=lenet_paper",
        "--encoding=cppn",
    }
    assert {"--model=caffenet", "--encoding=cppn", "--population=400", "--generations=5000"} <= (
        flags_of("fig8_caffenet.flags")
    )
    lite0 = flags_of("imagenet_lite0_10class_cppn.flags")
    assert "--classes=84,145,327,429,489,508,546,565,761,779" in lite0
    assert {"--population=64", "--generations=300", "--cppn_coords=raw"} <= lite0


# (preset, whether it needs the paper's LeNet weights); mnist_cppn_paper_lenet only parses
# above: its run would add 8-16 s and test nothing the other three do not
MNIST_RUNS = [
    ("mnist_direct.flags", False),
    ("mnist_cppn.flags", False),
    ("mnist_direct_paper_lenet.flags", True),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,paper_lenet", MNIST_RUNS)
def test_mnist_preset_runs_and_later_flags_override_it(name, paper_lenet, tmp_path):
    extra = [f"--weights={require(PAPER_LENET)}"] if paper_lenet else []
    path = REPO / "experiments" / "configs" / name
    out = tmp_path / "run"
    res = script_runner.run(
        [sys.executable, str(REPO / "experiments" / "fool.py"), f"--flagfile={path}", *extra]
        + ["--generations=2", "--population=20", f"--out={out}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    want = dict(line[2:].split("=", 1) for line in flag_lines(path))
    assert (summary["model"], summary["encoding"]) == (want["model"], want["encoding"])
    assert (summary["population"], summary["generations_completed"]) == (20, 2)  # overridden
    assert summary["seed"] == int(want["seed"])
