"""The documentation holds only what is true of this repository.

README.md, docs/*.md, experiments/README.md and the READMEs under results/ are read as a user
reads them: every `python experiments/X.py` names a script that exists and only flags it
defines (read from the script's own `--helpfull`); every repository path, `jaxfool.` name, link,
anchor and image they name exists; no path points outside the repository; and every table of
measurements in README.md and docs/*.md has the command that produced it right before or after
it (or says which commit's historical measurement it is). experiments/README.md's table lists
every script and preset, with only flags they define.

`problems(text, where)` is the whole check of one Markdown text, so it can be run on any file:
    python tests/test_docs.py README.md docs/paper.md
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from . import script_runner
except ImportError:  # run as a script: python tests/test_docs.py FILE.md
    import script_runner

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
SCRIPTS = sorted(p.stem for p in EXPERIMENTS.glob("*.py"))
PRESETS = sorted(EXPERIMENTS.glob("configs/*.flags"))
USER_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]  # tables need commands
ALL_DOCS = [*USER_DOCS, EXPERIMENTS / "README.md", *sorted(REPO.glob("results/**/README.md"))]
TOP_LEVEL = ("jaxfool/", "experiments/", "results/", "docs/", "tests/", "models/", ".ci/")
TOP_FILES = ("README.md", "CHANGELOG.md", "CITATION.cff", "LICENSE", "pyproject.toml", "setup.py")
# a measured table cell: a number with a decimal, a percentage, a ratio, a count of n, a unit
MEASURED = re.compile(
    r"^[*<>=~≥\s]*-?\d[\d,]*(\.\d+(e-?\d+)?|\s*%|\s*x\b|/\d+|\s+(s|ms|µs|MiB|GiB|MB|KB)\b)"
)
HISTORICAL = re.compile(r"historical measurement[^.]*commit `[0-9a-f]{7,40}`", re.S)


# --- what the scripts accept -------------------------------------------------------------------
def _helpfull(script: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """(script, every flag it accepts, its boolean flags) from `--helpfull` in a subprocess."""
    res = script_runner.run(
        [sys.executable, str(EXPERIMENTS / f"{script}.py"), "--helpfull"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert res.returncode in (0, 1), f"{script}.py --helpfull: {res.stderr[-2000:]}"  # absl: 1
    names, booleans = set(), set()
    for m in re.finditer(r"^\s+--(\[no\])?([A-Za-z_][\w-]*):", res.stdout, re.M):
        names.add(m.group(2))
        if m.group(1):
            booleans.add(m.group(2))
    assert "flagfile" in names, f"{script}.py --helpfull listed no absl flags"
    return script, frozenset(names), frozenset(booleans)


@functools.cache
def script_flags() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """script name -> (flags, boolean flags), every script of experiments/ (~0.2 s each through
    the script runner, so one after another)."""
    return {s: (f, b) for s, f, b in map(_helpfull, SCRIPTS)}


def flag_known(script: str, name: str, flags: dict) -> bool:
    names, booleans = flags[script]
    return name in names or (name.startswith("no") and name[2:] in booleans)


# --- reading Markdown --------------------------------------------------------------------------
def blocks(text: str) -> list[tuple[str, str]]:
    """The text as (kind, text) blocks: 'code' (a fenced block), 'heading', 'table', 'text'."""
    out: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(("code", "\n".join(lines[i : j + 1])))
            i = j + 1
        elif line.startswith("#"):
            out.append(("heading", line))
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(("table", "\n".join(lines[i:j])))
            i = j
        elif not line.strip():
            i += 1
        else:
            j = i
            while (
                j < len(lines) and lines[j].strip() and not lines[j].startswith(("```", "#", "|"))
            ):
                j += 1
            out.append(("text", "\n".join(lines[i:j])))
            i = j
    return out


def inline_code(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def code_lines(code_block: str) -> list[str]:
    """A fenced block's lines, with backslash continuations joined."""
    joined, current = [], ""
    for line in code_block.splitlines()[1:-1]:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
        else:
            joined.append(current + line)
            current = ""
    return joined + ([current] if current else [])


def commands(text: str) -> list[str]:
    """Every command-like string: each (joined) line of a fenced block, each inline code span."""
    out = []
    for kind, body in blocks(text):
        if kind == "code":
            out.extend(code_lines(body))
        else:
            out.extend(inline_code(body))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = heading.lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(b) for kind, b in blocks(path.read_text()) if kind == "heading"}


# --- the checks --------------------------------------------------------------------------------
def command_problems(text: str, flags: dict) -> list[str]:
    """Scripts that do not exist, and flags a script does not define."""
    found = []
    for command in commands(text):
        for segment in re.split(r";|&&|\|\||\|", command):
            try:
                words = shlex.split(segment)
            except ValueError:
                words = segment.split()
            script = None
            for word in words:
                m = re.fullmatch(r"(?:\S*/)?experiments/(\w+)\.py", word) or re.fullmatch(
                    r"(\w+)\.py", word
                )
                if m and (word.startswith(("experiments/", "./experiments/")) or "/" not in word):
                    name = m.group(1)
                    if name.isupper() or name == "X":  # a placeholder: experiments/NAME.py
                        script = None
                        continue
                    if "experiments/" in word and name not in SCRIPTS:
                        found.append(f"{word}: no such script")
                        script = None
                    else:
                        script = name if name in SCRIPTS else None
                    continue
                if script and (f := re.match(r"--([A-Za-z_]\w*)(=|$)", word)):
                    if not flag_known(script, f.group(1), flags):
                        flag = f.group(1)
                        found.append(f"{script}.py has no flag --{flag} ({segment.strip()!r})")
    return found


def _repo_path_candidates(text: str) -> list[str]:
    words = []
    for command in commands(text):
        for word in re.split(r"[\s,;()\"'=]+", command):
            words.append(word.strip(".:`*"))
    return [w for w in words if w.startswith(TOP_LEVEL) or w in TOP_FILES or w.endswith(".md")]


def path_exists(word: str) -> bool:
    """A repository path, maybe with a glob or a placeholder (`round_XX`, `<stem>`, `NAME`)."""
    if word.endswith(".md") and "/" not in word:  # a bare file name: somewhere in the repository
        return any(REPO.glob(f"**/{word}"))
    pattern = re.sub(r"<[^>]*>|XX|\bNAME\b|\bX\b", "*", word.rstrip("/"))
    if any(c in pattern for c in "*?["):
        return any(REPO.glob(pattern))
    return (REPO / pattern).exists()


def dotted_name_exists(name: str) -> bool:
    """`jaxfool.a.b.attr` names a module, or something a module defines or imports."""
    parts = name.rstrip(".()").split(".")
    for i in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:i])
        for module in (base.with_suffix(".py"), base / "__init__.py"):
            if module.is_file():
                rest = parts[i:]
                if not rest:
                    return True
                n = re.escape(rest[0])  # defined, assigned or imported there
                return bool(
                    re.search(
                        rf"^\s*(async def|def|class)\s+{n}\b|^\s*{n}\s*[:=]|^\s*{n},?\s*$"
                        rf"|^\s*(from|import)\b.*\b{n}\b|\bas {n}\b",
                        module.read_text(),
                        re.M,
                    )
                )
    return False


def reference_problems(text: str, where: Path) -> list[str]:
    """Paths, names, links, anchors and images that do not exist or leave the repository."""
    found = []
    for word in _repo_path_candidates(text):
        if not path_exists(word):
            found.append(f"{word}: not in the repository")
    spans = [s for k, b in blocks(text) for s in ([b] if k == "code" else inline_code(b))]
    for span in spans:
        names = re.findall(r"\bjaxfool(?:\.\w+)+", span)
        for module, imported in re.findall(r"\bfrom (jaxfool(?:\.\w+)*) import ([\w, ]+)", span):
            names += [f"{module}.{n.strip()}" for n in imported.split(",") if n.strip()]
        for name in names:
            if not dotted_name_exists(name):
                found.append(f"{name}: no such module or name")
        for m in re.findall(r"(?:^|[\s=:'\"])(\.\./\S+|/work/\S+|\S*shared/data\S*)", span):
            found.append(f"{m}: points outside the repository")
    for m in re.finditer(r"(!?)\[[^\]]*\]\(([^)\s]+)\)|<img[^>]*src=\"([^\"]+)\"", text):
        image = m.group(1) == "!" or m.group(3) is not None
        target = m.group(2) or m.group(3)
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, anchor = target.partition("#")
        if not file:  # an anchor in this text
            headings = {slug(b) for kind, b in blocks(text) if kind == "heading"}
            if anchor not in headings:
                found.append(f"{target}: no such heading here")
            continue
        resolved = (where.parent / file).resolve()
        if REPO.resolve() not in (resolved, *resolved.parents):
            found.append(f"{target}: points outside the repository")
            continue
        if not resolved.exists():
            found.append(f"{target}: {'image' if image else 'link'} target does not exist")
        elif image and resolved.suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif", ".svg"):
            found.append(f"{target}: not an image")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            found.append(f"{target}: no heading #{anchor} in {resolved.name}")
    for name in ("PAPER.md", "ANCHORS.md", "MODELS.md", "shared/"):
        if name in text and not path_exists(name):
            found.append(f"{name}: cited, but not part of the repository")
    return sorted(set(found))


ENVIRONMENT = {"HOME", "PATH", "PWD", "USER", "PYTHONPATH", "JAXFOOL_CACHE", "XLA_FLAGS", "OUT"}


def shell_problems(text: str) -> list[str]:
    """Shell variables a code block uses that no code block of the text sets."""
    code = "\n".join(b for k, b in blocks(text) if k == "code")
    assigned = set(re.findall(r"(?:^|[\s;])([A-Za-z_]\w*)=", code, re.M))
    assigned |= set(re.findall(r"\bfor\s+(\w+)\s+in\b", code))
    used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", code))
    unset = sorted(used - assigned - ENVIRONMENT)
    return [f"${name}: used in a command but never set" for name in unset]


def layout_problems(text: str) -> list[str]:
    """A line right after a table (no blank line) renders as one more row of it; a line of
    prose that starts with '>' (a wrapped '>= 0.99') renders as a quotation."""
    found = [
        f"no blank line after a table, before: {m.group(1)[:60]!r}"
        for m in re.finditer(r"^\|.*\n([^|\s].*)$", text, re.M)
    ]
    for kind, body in blocks(text):
        if kind == "text":
            found += [f"a line starts with '>': {line[:60]!r}" for line in body.splitlines()
                      if line.startswith(">")]  # fmt: skip
    return found


def measured_table(table: str) -> bool:
    rows = [r.strip().strip("|").split("|") for r in table.splitlines()[2:]]
    cells = [c.strip() for row in rows for c in row if c.strip()]
    return bool(cells) and sum(bool(MEASURED.match(c)) for c in cells) >= 0.2 * len(cells)


def has_command(text: str) -> bool:
    return bool(
        re.search(r"python3?\s+(\S*/)?experiments/\w+\.py|--flagfile=", text)
        or HISTORICAL.search(text)
    )


def table_problems(text: str) -> list[str]:
    """Tables of measurements without a command in them or in the two blocks around them."""
    found = []
    parts = blocks(text)
    for i, (kind, body) in enumerate(parts):
        if kind != "table" or not measured_table(body):
            continue
        near = [body]
        for step in (-1, 1):
            j, seen = i + step, 0
            while 0 <= j < len(parts) and seen < 2 and parts[j][0] not in ("heading", "table"):
                near.append(parts[j][1])
                j, seen = j + step, seen + 1
        if not has_command("\n".join(near)):
            head = body.splitlines()[0][:90]
            found.append(f"table without the command that produced it: {head}")
    return found


def problems(text: str, where: Path, tables: bool = True, flags: dict | None = None) -> list[str]:
    """Everything wrong with Markdown `text` read as the file `where`."""
    flags = script_flags() if flags is None else flags
    found = command_problems(text, flags) + reference_problems(text, where)
    found += shell_problems(text) + layout_problems(text)
    return found + (table_problems(text) if tables else [])


# --- tests -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_doc_names_only_what_exists(path):
    assert problems(path.read_text(), path, tables=path in USER_DOCS) == []


def test_readme_is_short_and_docs_exist():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250
    for page in ("running", "paper", "faithfulness", "emitters", "models", "library",
                 "accelerators", "performance", "troubleshooting", "limitations"):  # fmt: skip
        assert (REPO / "docs" / f"{page}.md").is_file(), page
    assert (REPO / "docs" / "tutorial.ipynb").is_file()


def test_the_checker_finds_each_kind_of_mistake():
    flags = {"fool": (frozenset({"model", "flagfile", "shard"}), frozenset({"shard"}))}
    bad = "\n".join(
        [
            "# Title",
            "`python experiments/nope.py` and `python experiments/fool.py --modle=lenet --noshard`",
            "see `jaxfool/no_such.py`, `jaxfool.base.cli.NoSuchThing` and PAPER.md",
            "`from jaxfool import evolve`",
            "[a](missing.md) ![b](figures/none.png) [c](../../elsewhere.md) [d](#no-heading)",
            "```bash",
            "P=../shared/data/paper-lenet",
            "python experiments/fool.py --classes=$C",
            "```",
            "",
            "## Results",
            "",
            "| run | median |",
            "|---|---|",
            "| a | 99.9% |",
            "| b | 12.5% |",
            "A paragraph without a blank line before it, and a count",
            ">= 0.99 that wrapped.",
        ]
    )
    found = "\n".join(problems(bad, REPO / "docs" / "x.md", flags=flags))
    for expected in (
        "nope.py: no such script",
        "fool.py has no flag --modle",
        "jaxfool/no_such.py: not in the repository",
        "jaxfool.base.cli.NoSuchThing: no such module",
        "jaxfool.evolve: no such module",
        "PAPER.md",
        "missing.md: link target does not exist",
        "figures/none.png: image target does not exist",
        "../../elsewhere.md: points outside the repository",
        "#no-heading: no such heading here",
        "../shared/data/paper-lenet: points outside",
        "table without the command",
        "$C: used in a command but never set",
        "no blank line after a table",
        "a line starts with '>'",
    ):
        assert expected in found, (expected, found)
    assert "no flag --noshard" not in found  # --noname is a boolean flag's negation


def test_experiments_readme_lists_every_script_and_preset_with_their_flags():
    flags = script_flags()
    text = (EXPERIMENTS / "README.md").read_text()
    table = next(b for k, b in blocks(text) if k == "table")
    rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table.splitlines()[2:]]
    scripts, presets, current = [], [], None
    for first, *rest in rows:
        name = first.strip("`")
        to_add = rest[2]
        if name.endswith(".py"):
            current = name[:-3]
            assert current in SCRIPTS, name
            scripts.append(current)
        else:
            path = EXPERIMENTS / name
            assert path.is_file() and path.suffix == ".flags", name
            presets.append(path)
            header = re.search(r"#\s*script:\s*experiments/(\w+)\.py", path.read_text())
            assert header and header.group(1) == current, f"{name} is listed under {current}.py"
            required = re.search(r"# Add:(.*?)(Optional|$)", path.read_text(), re.S).group(1)
            for flag in re.findall(r"--(\w+)", required):
                assert f"--{flag}" in to_add, f"{name}: the header's required --{flag} is missing"
        for flag in re.findall(r"--(\w+)", to_add):
            assert flag_known(current, flag, flags), f"{name}: {current}.py has no --{flag}"
    assert sorted(scripts) == SCRIPTS, "every script once"
    assert sorted(presets) == PRESETS, "every preset once"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.slow
def test_library_page_snippets_run(tmp_path, monkeypatch):
    """docs/library.md's examples run as written (the run-loop one in a temporary folder)."""
    monkeypatch.chdir(tmp_path)
    for code in _python_blocks(REPO / "docs" / "library.md"):
        namespace: dict = {}
        exec(compile(code, "docs/library.md", "exec"), namespace)
    assert (tmp_path / "runs" / "lib_demo" / "manifest.json").is_file()


def test_the_api_reference_builds_without_a_warning(tmp_path):
    """`.ci/run` builds the API reference with warnings as errors: an annotation pdoc cannot
    resolve (a name imported only where a base class lives) fails here first, with its message."""
    pytest.importorskip("pdoc", reason="pdoc is in the [dev] extra")
    cmd = [sys.executable, "-W", "error", "-m", "pdoc", "jaxfool", "--docformat", "markdown"]
    res = subprocess.run([*cmd, "-o", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr.strip().splitlines()[-1:]
    assert (tmp_path / "jaxfool" / "search" / "emitters" / "gradient_full.html").is_file()


if __name__ == "__main__":
    bad = 0
    for name in sys.argv[1:]:
        path = Path(name).resolve()
        for problem in problems(path.read_text(), path, tables=path in USER_DOCS):
            print(f"{name}: {problem}")
            bad += 1
    sys.exit(1 if bad else 0)
