"""Multi-view CNN: view pooling, the single-view baseline on the same network, and learning the
procedural classes from 12 rendered views within a CPU-minute."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastperc.geometry import ProceduralShapes
from fastperc.geometry.render import render
from fastperc.models.mvcnn import MVCNN, single_view_scores


def test_view_pooling_is_a_max_over_views_and_order_free():
    torch.manual_seed(0)
    net = MVCNN(5, 32).eval()
    views = torch.rand(2, 12, 32, 32)
    out = net(views)
    assert out.shape == (2, 5)
    torch.testing.assert_close(net(views[:, torch.randperm(12)]), out)
    one = net(views[:, :1])
    torch.testing.assert_close(one, net.per_view(views[:, :1])[:, 0])  # one view: pooling is the identity
    probs = single_view_scores(net, views)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="views must be"):
        net(torch.rand(2, 12, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        MVCNN(5, 40)


def test_mvcnn_learns_procedural_classes_and_pooling_is_measured():
    torch.manual_seed(0)
    classes = ("sphere", "capsule", "cylinder", "cone", "lamp", "table")
    train = ProceduralShapes("train", per_class=10, classes=classes)
    test = ProceduralShapes("test", per_class=5, classes=classes)

    def views(data):
        items = [data[i] for i in range(len(data))]
        return torch.stack([render(m, size=32)["image"] for m, _ in items]), torch.tensor([c for _, c in items])

    x, y = views(train)
    xt, yt = views(test)
    net = MVCNN(len(classes), 32, channels=(16, 32, 64, 64), hidden=64)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for epoch in range(12):
        net.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), 10):
            batch = order[start:start + 10]
            # Trained on both objectives: pooled views (MVCNN) and each view alone (the single-view CNN).
            loss = F.cross_entropy(net(x[batch]), y[batch]) + F.cross_entropy(
                net.per_view(x[batch]).flatten(0, 1), y[batch].repeat_interleave(12))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        multi = (net(xt).argmax(1) == yt).float().mean().item()
        single = (single_view_scores(net, xt).argmax(1) == yt).float().mean().item()
        one_view = (net.per_view(xt).argmax(2) == yt[:, None]).float().mean().item()
    assert multi >= 0.7, (multi, single, one_view)  # chance: 1/6
    assert one_view <= multi + 1e-6, (multi, one_view)  # one view at a time is never better here


def test_cli_trains_both_networks_resumes_and_evaluates(tmp_path):
    import json

    from PIL import Image
    from test_voxnet import run_cli

    out = tmp_path / "run"
    common = ["--classes", "sphere,box", "--per-class", "2", "--test-per-class", "1", "--size", "16", "--out", str(out)]
    first = run_cli("mvcnn", "train", *common, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    second = run_cli("mvcnn", "train", *common, "--epochs", "2")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr and "epoch 2:" in second.stderr and "epoch 1:" not in second.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]["multi_view"]) == 2 and sum(map(sum, metrics["confusion"])) == 2
    for key in ("multi_view", "single_view_averaged", "single_view_one"):
        assert 0 <= metrics[key] <= 1
    assert Image.open(out / "curves.png").size[0] > 100 and Image.open(out / "confusion.png").size[0] > 100
    evaluated = run_cli("mvcnn", "eval", "--checkpoint", str(out / "mvcnn.pt"), "--test-per-class", "1")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["multi_view"] == metrics["multi_view"]
    bad = run_cli("mvcnn", "train", *common[:-4], "--size", "20", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "multiple of 16" in bad.stderr
