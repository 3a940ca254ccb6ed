"""VoxNet: the dense and the sparse forward agree for the same weights, and the network learns the
procedural classes from voxel grids within a CPU-minute."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from fastperc.geometry import ProceduralShapes, make_shape, occupancy, sparse_occupancy, write_off
from fastperc.models.voxnet import VoxNet, feature_size
from fastperc.sparse import SparseTensor


def grids(meshes, resolution, solid=False):
    dense = torch.stack([occupancy(m, resolution, padding=1, solid=solid) for m in meshes])
    return dense, sparse_occupancy(meshes, resolution, padding=1, solid=solid)


@pytest.mark.parametrize("resolution,solid", [(32, False), (32, True), (20, False)])
def test_sparse_forward_equals_dense_for_the_same_weights(resolution, solid):
    torch.manual_seed(0)
    net = VoxNet(5, resolution).double().eval()
    meshes = [make_shape(name, seed) for seed, name in enumerate(("chair", "torus", "lamp"))]
    dense, sites = grids(meshes, resolution, solid)
    assert torch.equal(sites.to_dense(3)[:, 0] > 0, dense)  # the same voxels both ways
    want = net(dense)
    got = net.forward_sparse(sites)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # The weight gradients agree too: the sparse path is the same function of the same parameters.
    g_dense = torch.autograd.grad(want.square().sum(), list(net.parameters()))
    g_sparse = torch.autograd.grad(net.forward_sparse(sites).square().sum(), list(net.parameters()))
    for a, b in zip(g_sparse, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_an_empty_grid_and_a_batch_item_without_sites():
    net = VoxNet(3, 16).double().eval()
    dense = torch.zeros(2, 16, 16, 16, dtype=torch.bool)
    dense[1, 4:9, 5:7, 3:12] = True
    sites = SparseTensor(torch.nonzero(dense).to(torch.int32), torch.ones(int(dense.sum()), 1), spatial_shape=(16,) * 3)
    torch.testing.assert_close(net.forward_sparse(sites, batch_size=2), net(dense), rtol=1e-12, atol=1e-12)


def test_bad_input_is_a_clear_error():
    net = VoxNet(3, 32)
    with pytest.raises(ValueError, match="32\\^3"):
        net(torch.zeros(1, 16, 16, 16))
    with pytest.raises(ValueError, match="occupancy must be"):
        net(torch.zeros(1, 2, 32, 32, 32))
    with pytest.raises(TypeError, match="SparseTensor"):
        net.forward_sparse(torch.zeros(1, 32, 32, 32))
    with pytest.raises(ValueError, match="at least"):
        feature_size(8)


def test_voxnet_learns_four_procedural_classes():
    # 4 classes x 12 shapes at 24^3 (random pose), a few epochs of Adam on 2 threads: far above chance
    # (25%) on shapes it has not seen.
    torch.manual_seed(0)
    classes = ("sphere", "box", "cone", "torus")
    train = ProceduralShapes("train", per_class=12, classes=classes)
    test = ProceduralShapes("test", per_class=6, classes=classes)

    def voxels(data):
        items = [data[i] for i in range(len(data))]
        return torch.stack([occupancy(m, 24, solid=True) for m, _ in items]), torch.tensor([c for _, c in items])

    x, y = voxels(train)
    xt, yt = voxels(test)
    net = VoxNet(len(classes), 24)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for epoch in range(15):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 8):
            batch = order[start:start + 8]
            loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(xt).argmax(1) == yt).float().mean().item()
        sparse_accuracy = (net.forward_sparse(sparse_occupancy([test[i][0] for i in range(len(test))], 24, padding=1,
                                                               solid=True)).argmax(1) == yt).float().mean().item()
    assert accuracy >= 0.75, accuracy
    assert sparse_accuracy == accuracy


def run_cli(*args):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-m", "fastperc.cli", *args], env=dict(os.environ, PYTHONPATH=root),
                          capture_output=True, text=True, timeout=600)


def test_cli_trains_resumes_evaluates_and_draws(tmp_path):
    out = tmp_path / "run"
    common = ["--classes", "sphere,box,cone", "--per-class", "3", "--test-per-class", "2", "--resolution", "16",
              "--out", str(out)]
    first = run_cli("voxnet", "train", *common, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    assert "epoch 1:" in first.stderr and "test accuracy" in first.stdout
    second = run_cli("voxnet", "train", *common, "--epochs", "2", "--sparse")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr and "epoch 2:" in second.stderr and "epoch 1:" not in second.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]["loss"]) == 2 and metrics["classes"] == ["sphere", "box", "cone"]
    assert sum(map(sum, metrics["confusion"])) == 6
    for picture in ("curves.png", "loss.png", "confusion.png"):
        assert Image.open(out / picture).size[0] > 100
    evaluated = run_cli("voxnet", "eval", "--checkpoint", str(out / "voxnet.pt"), "--test-per-class", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["test_voting"] == metrics["test_voting"]
    other = run_cli("voxnet", "train", *common[:-2], "--resolution", "20", "--out", str(out), "--epochs", "1")
    assert other.returncode == 2 and "another resolution" in other.stderr


def test_cli_reads_a_modelnet_folder(tmp_path):
    for name, shape in (("chair", "chair"), ("table", "table")):
        for split, count in (("train", 2), ("test", 1)):
            folder = tmp_path / "ModelNet10" / name / split
            folder.mkdir(parents=True)
            for i in range(count):
                write_off(make_shape(shape, 10 * i + (split == "test")), folder / f"{name}_{i + 1:04d}.off")
    out = run_cli("voxnet", "train", "--data", str(tmp_path / "ModelNet10"), "--resolution", "16", "--epochs", "1",
                  "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["classes"] == ["chair", "table"]
    missing = run_cli("voxnet", "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run2"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr
