"""VoxNet: the dense and the sparse forward agree for the same weights, and the network learns the
procedural classes from voxel grids within a CPU-minute."""
from __future__ import annotations

import pytest
import torch

from fastperc.geometry import ProceduralShapes, make_shape, occupancy, sparse_occupancy
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
