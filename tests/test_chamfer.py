"""knn_points and chamfer_distance (the exact pure-PyTorch search) against brute force with cdist."""
from __future__ import annotations

import pytest
import torch

import fastperc
from fastperc.reference import knn as reference_knn


def brute_force(x, y, k):
    d2 = torch.cdist(x.double(), y.double(), compute_mode="donot_use_mm_for_euclid_dist") ** 2
    return torch.sort(d2, dim=-1, stable=True)


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("quantised", [False, True])
def test_knn_matches_brute_force_on_random_clouds(k, quantised):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 200, 3, generator=g, dtype=torch.float64), torch.rand(3, 150, 3, generator=g, dtype=torch.float64)
    if quantised:  # coordinates on a coarse grid, far from the origin: exact ties everywhere
        x, y = (x * 6).round() / 6 + 100, (y * 6).round() / 6 + 100
    d2, idx = fastperc.knn_points(x, y, k)
    want = brute_force(x, y, k)
    assert torch.equal(idx, want.indices[..., :k])
    torch.testing.assert_close(d2, want.values[..., :k], rtol=1e-12, atol=1e-15)


def test_ties_go_to_the_lowest_index_and_float32_orders_exactly():
    # A lattice: many targets at exactly the same distance from each query.
    axis = torch.arange(4.0)
    lattice = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)
    shuffled = lattice[:, torch.randperm(64, generator=torch.Generator().manual_seed(1))]
    queries = torch.tensor([[[1.5, 1.5, 1.5], [0.5, 0.0, 0.0], [2.0, 2.0, 2.5]]])
    for dtype in (torch.float64, torch.float32):
        d2, idx = fastperc.knn_points(queries.to(dtype), shuffled.to(dtype), k=8)
        want = brute_force(queries, shuffled, 8)
        assert torch.equal(idx, want.indices[..., :8])  # equal distances: ascending index
        assert (idx[0, 0].diff() > 0).all()  # the 8 corners around (1.5, 1.5, 1.5), all at 0.75
    # float32 coordinates whose squared distances differ in the last bits are still ordered right.
    x = torch.tensor([[[0.0, 0.0, 0.0]]])
    y = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0 - 2 ** -24, 0.0]]])
    assert fastperc.knn_points(x, y)[1].item() == 1


def test_ragged_batches_ignore_padding():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 50, 3, generator=g, dtype=torch.float64), torch.rand(2, 40, 3, generator=g, dtype=torch.float64)
    xl, yl = torch.tensor([50, 20]), torch.tensor([10, 40])
    d2, idx = fastperc.knn_points(x, y, 2, xl, yl)
    assert (idx[0] < 10).all() and (idx[1, 20:] == -1).all() and torch.isinf(d2[1, 20:]).all()
    assert torch.equal(idx[0], brute_force(x[:1], y[:1, :10], 2).indices[0, :, :2])
    # k beyond a cloud's size: the missing neighbours are -1 / inf.
    d2, idx = fastperc.knn_points(x, y, 12, xl, yl)
    assert (idx[0, :, 10:] == -1).all() and torch.isinf(d2[0, :, 10:]).all()
    before = fastperc.chamfer_distance(x, y, xl, yl, reduction="none")
    x2, y2 = x.clone(), y.clone()
    x2[1, 20:] = 1e6
    y2[0, 10:] = float("nan")  # padding is never read
    torch.testing.assert_close(fastperc.chamfer_distance(x2, y2, xl, yl, reduction="none"), before)


def test_chamfer_against_the_formula():
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 60, 3, generator=g, dtype=torch.float64), torch.rand(2, 45, 3, generator=g, dtype=torch.float64)
    d = torch.cdist(x, y)
    forward, backward = d.min(2).values, d.min(1).values
    torch.testing.assert_close(fastperc.chamfer_distance(x, y, reduction="none"),
                               (forward ** 2).mean(1) + (backward ** 2).mean(1))
    torch.testing.assert_close(fastperc.chamfer_distance(x, y, squared=False, point_reduction="sum", reduction="sum"),
                               forward.sum() + backward.sum())
    torch.testing.assert_close(fastperc.chamfer_distance(x, y, single_directional=True), (forward ** 2).mean())
    wx, wy = torch.rand(2, 60, generator=g, dtype=torch.float64), torch.rand(2, 45, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fastperc.chamfer_distance(x, y, x_weights=wx, y_weights=wy, reduction="none"),
                               (wx * forward ** 2).sum(1) / wx.sum(1) + (wy * backward ** 2).sum(1) / wy.sum(1))
    nx = torch.nn.functional.normalize(torch.randn(2, 60, 3, generator=g, dtype=torch.float64), dim=-1)
    ny = torch.nn.functional.normalize(torch.randn(2, 45, 3, generator=g, dtype=torch.float64), dim=-1)
    dist, normals = fastperc.chamfer_distance(x, y, x_normals=nx, y_normals=ny)
    cos_x = (nx * ny.gather(1, d.argmin(2)[..., None].expand(-1, -1, 3))).sum(-1).abs()
    cos_y = (ny * nx.gather(1, d.argmin(1)[..., None].expand(-1, -1, 3))).sum(-1).abs()
    torch.testing.assert_close(normals, ((1 - cos_x).mean(1) + (1 - cos_y).mean(1)).mean())


def test_chamfer_gradients_and_second_derivatives():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fastperc.chamfer_distance(a, b), (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: fastperc.chamfer_distance(a, b), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: fastperc.chamfer_distance(a, b, squared=False), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: fastperc.knn_points(a, b, 3)[0], (x, y))


def test_small_query_blocks_give_the_same_answer(monkeypatch):
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(1, 300, 3, generator=g), torch.rand(1, 500, 3, generator=g)
    whole = fastperc.knn_points(x, y, 2)
    monkeypatch.setattr(reference_knn, "QUERY_BLOCK_ELEMENTS", 1000)  # blocks of 2 queries
    blocks = fastperc.knn_points(x, y, 2)
    assert torch.equal(whole[0], blocks[0]) and torch.equal(whole[1], blocks[1])


def test_surface_samples_of_one_mesh_are_chamfer_close():
    from fastperc.geometry import make_shape

    mesh = make_shape("chair", 0)
    a, _ = mesh.sample_surface(3000, torch.Generator().manual_seed(0))
    b, _ = mesh.sample_surface(3000, torch.Generator().manual_seed(1))
    other, _ = make_shape("lamp", 0).sample_surface(3000, torch.Generator().manual_seed(0))
    same = fastperc.chamfer_distance(a[None], b[None])
    assert same < 0.01 * fastperc.chamfer_distance(a[None], other[None])


def test_bad_input_is_refused_clearly():
    x, y = torch.rand(2, 5, 3), torch.rand(2, 4, 3)
    cases = [
        (lambda: fastperc.knn_points(x, torch.rand(2, 4, 2)), ValueError, "same D"),
        (lambda: fastperc.knn_points(x, torch.rand(3, 4, 3)), ValueError, "same batch"),
        (lambda: fastperc.knn_points(x[0], y[0]), ValueError, r"\(B, N, D\)"),
        (lambda: fastperc.knn_points(x, y.double()), TypeError, "same dtype"),
        (lambda: fastperc.knn_points(x, y, 0), ValueError, "k must be"),
        (lambda: fastperc.knn_points(x, y, x_lengths=torch.tensor([6, 1])), ValueError, r"\[0, 5\]"),
        (lambda: fastperc.knn_points(x, y, y_lengths=torch.tensor([-1, 1])), ValueError, "y_lengths"),
        (lambda: fastperc.knn_points(x, y, y_lengths=torch.tensor([1.0, 1.0])), ValueError, "integers"),
        (lambda: fastperc.knn_points(torch.full((2, 5, 3), float("nan")), y), ValueError, "NaN"),
        (lambda: fastperc.knn_points(x.long(), y), TypeError, "float"),
        (lambda: fastperc.chamfer_distance(x, y, y_lengths=torch.tensor([0, 4])), ValueError, "empty"),
        (lambda: fastperc.chamfer_distance(x, y, x_normals=x), ValueError, "both"),
        (lambda: fastperc.chamfer_distance(x, y, x_weights=torch.rand(2, 4)), ValueError, "x_weights"),
        (lambda: fastperc.chamfer_distance(x, y, reduction="max"), ValueError, "reduction"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
    # Both clouds of an item empty: nothing to compare, the item contributes 0.
    both_empty = fastperc.chamfer_distance(x, y, torch.tensor([0, 5]), torch.tensor([0, 4]), reduction="none")
    assert both_empty[0] == 0 and both_empty[1] > 0
