"""The README's install lines do what they say: the peers line keeps the installed torch (pip resolves it
for real, --dry-run, ignoring what is installed, so every requirement is chosen again), and the bench's
hint for missing peers is a command of the same form."""
import json
import os
import re
import subprocess
import sys

import torch

from fastperc import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_peers_line():
    lines = [line for line in open(os.path.join(ROOT, "README.md")).read().splitlines()
             if line.startswith("pip install") and '".[peers]"' in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_readme_peers_line_keeps_the_installed_torch(tmp_path):
    line = readme_peers_line()
    assert bench.KEEP_TORCH in line  # the same constraint as the bench's hint
    report = tmp_path / "report.json"
    python_dir = os.path.dirname(sys.executable)  # `python` and `pip` of this environment, as in the user's venv
    dry = line.replace("pip install", f"pip install --dry-run --ignore-installed --quiet --report {report}", 1)
    out = subprocess.run(["bash", "-c", dry], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, PATH=python_dir + os.pathsep + os.environ["PATH"]))
    assert out.returncode == 0, out.stderr[-3000:]
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    public = torch.__version__.split("+")[0]
    assert chosen["torch"].split("+")[0] == public, chosen  # the installed release, not a newer one
    assert not [name for name in chosen if re.match(r"nvidia-", name)] or torch.version.cuda, chosen  # no CUDA wheels
    for peer in ("pytorch-msssim", "kornia", "torchmetrics", "scikit-image", "spconv"):
        assert peer in chosen, (peer, chosen)


def test_bench_hint_installs_the_missing_peers_keeping_torch():
    command = bench.peers_install_command(["pytorch_msssim", "skimage"])
    assert command.startswith("pip install pytorch-msssim scikit-image -c <(")
    substitution = command.split(" -c ", 1)[1]  # <(python -c "...") : the constraints file it makes
    out = subprocess.run(["bash", "-c", "cat " + substitution], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]))
    assert out.stdout.strip() == "torch==" + torch.__version__.split("+")[0], out
