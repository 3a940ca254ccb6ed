"""Every Python code block of README.md runs as written, in a fresh namespace and an empty folder (so a
block that needs a file it does not make itself fails here, as it would for a user)."""
import os
import re
import warnings

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks():
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        heading = re.findall(r"^#+ (.*)$", text[:match.start()], flags=re.M)[-1]
        line = text[:match.start()].count("\n") + 2
        blocks.append(pytest.param(match.group(1), line, id=f"L{line}-{heading[:30]}"))
    return blocks


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 4


@pytest.mark.parametrize("code,line", python_blocks())
def test_readme_block_runs(code, line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-filter notes of blocks run without weight files
        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
