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
