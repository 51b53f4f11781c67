"""The README's promises: the two set-up commands at its top, and a runnable library snippet."""

import re

from .conftest import REPO

README = (REPO / "README.md").read_text()


def test_readme_opens_with_the_main_job_and_the_tests():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert commands[0].endswith(".venv/bin/python experiments/fool.py")
    assert commands[1].endswith(".venv/bin/python -m pytest -q")
    ci = (REPO / ".ci" / "run").read_text()
    install = commands[1].split(" && ")[1]
    assert install in ci and ".venv/bin/python -m pytest -q" in ci


def test_library_snippet_runs():
    section = README.split("## Use as a library", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    arch, state, images = namespace["arch"], namespace["state"], namespace["images"]
    assert arch.log_prob.shape == (10,) and int(state.generation) == 20
    assert (arch.log_prob > -1e9).all()
    assert images.shape == (10, 28, 28, 1) and str(images.dtype) == "uint8"
