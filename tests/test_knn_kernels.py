"""The knn_points kernels (CPU brute force and grid, CUDA under the emulator) against the exact
reference: the same indices bit for bit (ties to the lowest index), the distances, the deterministic
backward, gradcheck, opcheck, torch.compile, layouts, threads and bad input."""
from __future__ import annotations

import pytest
import torch

import fastperc
from conftest import cpu_isa, num_threads, supported_isas
from fastperc.reference import knn as reference_knn

ops = torch.ops.fastperc
GRID_SIZE = 2100  # 2100 x 2100 pairs pass the CPU kernel's brute-force limit (2^22): the grid search runs


def lengths(b, n):
    return torch.full((b,), n, dtype=torch.long)


def run(x, y, k, xl=None, yl=None, backend=ops):
    xl = lengths(x.shape[0], x.shape[1]) if xl is None else xl
    yl = lengths(y.shape[0], y.shape[1]) if yl is None else yl
    return backend.knn_points(x, y, xl, yl, k)


def reference(x, y, k, xl=None, yl=None):
    xl = lengths(x.shape[0], x.shape[1]) if xl is None else xl
    yl = lengths(y.shape[0], y.shape[1]) if yl is None else yl
    return reference_knn.knn(x, y, k, xl, yl)


def cloud(kind, b, n, seed, dtype=torch.float64):
    """Test clouds: uniform in a cube, on a sphere's surface, on a plane, on a coarse lattice far from
    the origin (exact ties everywhere), and clustered with a few far outliers."""
    g = torch.Generator().manual_seed(seed)
    if kind == "cube":
        p = torch.rand(b, n, 3, generator=g, dtype=torch.float64)
    elif kind == "sphere":
        p = torch.nn.functional.normalize(torch.randn(b, n, 3, generator=g, dtype=torch.float64), dim=-1)
    elif kind == "plane":
        p = torch.rand(b, n, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 0.0], dtype=torch.float64)
    elif kind == "lattice":
        p = (torch.rand(b, n, 3, generator=g, dtype=torch.float64) * 12).round() / 4 + 1000
    elif kind == "clusters":
        centres = torch.randn(b, 4, 3, generator=g, dtype=torch.float64) * 10
        pick = torch.randint(0, 4, (b, n), generator=g)
        p = torch.gather(centres, 1, pick[..., None].expand(-1, -1, 3)) + 0.05 * torch.randn(b, n, 3, generator=g,
                                                                                                dtype=torch.float64)
        p[:, :3] = 1e4 * torch.randn(b, 3, 3, generator=g, dtype=torch.float64)  # far from everything
    return p.to(dtype)


def assert_same_neighbours(got, want, rtol=1e-12):
    (gd, gi), (wd, wi) = got, want
    assert torch.equal(gi, wi)
    torch.testing.assert_close(gd.double(), wd.double(), rtol=rtol, atol=0)


@pytest.mark.parametrize("kind", ["cube", "sphere", "plane", "lattice", "clusters"])
@pytest.mark.parametrize("k", [1, 6, 32])
def test_cpu_grid_and_brute_force_match_the_reference(kind, k):
    # One cloud of GRID_SIZE points (grid search) and a small batch item (brute force) in one call.
    x, y = cloud(kind, 2, GRID_SIZE, 0), cloud(kind, 2, GRID_SIZE, 1)
    xl, yl = torch.tensor([GRID_SIZE, 300]), torch.tensor([GRID_SIZE, 250])
    got = run(x, y, k, xl, yl)
    assert_same_neighbours(got, reference(x, y, k, xl, yl))


@pytest.mark.parametrize("isa", supported_isas())
def test_brute_force_tile_of_every_isa_matches_the_reference(isa):
    # D = 3 brute force runs the per-ISA register tile; 37 queries leave a short last tile group and
    # 301 targets a chunk tail shorter than any vector.
    for kind in ("cube", "lattice", "clusters"):
        x, y = cloud(kind, 2, 37, 33), cloud(kind, 2, 301, 34)
        with cpu_isa(isa):
            for k in (1, 3, 32):
                assert_same_neighbours(run(x, y, k), reference(x, y, k))


@pytest.mark.parametrize("dim", [1, 2, 5, 32])
def test_other_dimensions_match_the_reference(dim):
    g = torch.Generator().manual_seed(dim)
    x = (torch.rand(2, 90, dim, generator=g, dtype=torch.float64) * 4).round()  # ties in low dimensions
    y = (torch.rand(2, 70, dim, generator=g, dtype=torch.float64) * 4).round()
    for k in (1, 7):
        assert_same_neighbours(run(x, y, k), reference(x, y, k))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reduced_precision_ranks_exactly_and_rounds_the_distances_once(dtype):
    # Ranked in float64, so the indices are exact for the rounded coordinates, and the distance is the
    # exact one rounded once: within half an ulp (the reference rounds at every step in the dtype).
    x, y = cloud("sphere", 2, GRID_SIZE, 2, dtype), cloud("sphere", 2, GRID_SIZE, 3, dtype)
    got = run(x, y, 3)
    exact = reference(x.double(), y.double(), 3)
    assert torch.equal(got[1], exact[1]) and torch.equal(reference(x, y, 3)[1], exact[1])
    info = torch.finfo(dtype)  # and within half the subnormal spacing below the normal range
    torch.testing.assert_close(got[0].double(), exact[0], rtol=info.eps / 2, atol=info.tiny * info.eps / 2)


def test_ragged_lengths_empty_clouds_and_k_beyond_the_cloud():
    x, y = cloud("cube", 4, 40, 4), cloud("cube", 4, 30, 5)
    xl, yl = torch.tensor([40, 0, 17, 25]), torch.tensor([30, 12, 0, 3])
    d, i = run(x, y, 5, xl, yl)
    assert_same_neighbours((d, i), reference(x, y, 5, xl, yl))
    assert (i[1] == -1).all() and (i[2] == -1).all() and (i[3, :25, 3:] == -1).all() and (i[3, :25, :3] >= 0).all()
    assert torch.isinf(d[i < 0]).all()
    empty = run(x[:, :0], y, 2)
    assert empty[0].shape == (4, 0, 2) and empty[1].shape == (4, 0, 2)


def test_queries_far_outside_the_grid_and_degenerate_clouds():
    g = torch.Generator().manual_seed(6)
    y = torch.rand(1, GRID_SIZE, 3, generator=g, dtype=torch.float64)
    x = torch.cat([torch.rand(1, GRID_SIZE - 4, 3, generator=g, dtype=torch.float64),
                   torch.tensor([[[1e9, 0, 0], [-1e12, 5, 5], [0.5, 0.5, 40.0], [1e-300, 0, 0]]],
                                dtype=torch.float64)], 1)
    assert_same_neighbours(run(x, y, 4), reference(x, y, 4))
    same = torch.zeros(1, GRID_SIZE, 3, dtype=torch.float64) + 7  # every target at one place
    assert_same_neighbours(run(x, same, 3), reference(x, same, 3))
    assert torch.equal(run(x, same, 3)[1][0, 0], torch.tensor([0, 1, 2]))
    line = torch.zeros(1, GRID_SIZE, 3, dtype=torch.float64)
    line[..., 1] = torch.linspace(0, 1, GRID_SIZE, dtype=torch.float64)  # collinear
    assert_same_neighbours(run(x, line, 2), reference(x, line, 2))
    twins = torch.cat([y[:, : GRID_SIZE // 2]] * 2, 1)  # every point twice: the lower index first
    d, i = run(y, twins, 2)
    assert_same_neighbours((d, i), reference(y, twins, 2))


def test_clouds_far_apart_take_the_coarser_grids():
    # Queries on a sphere of radius 1, targets on a concentric one of radius 3 and on a far-away blob:
    # every query's shells on the finest grid run out, and the coarser levels (or brute force) finish.
    g = torch.Generator().manual_seed(32)
    x = torch.nn.functional.normalize(torch.randn(2, GRID_SIZE, 3, generator=g, dtype=torch.float64), dim=-1)
    y = 3 * torch.nn.functional.normalize(torch.randn(2, GRID_SIZE, 3, generator=g, dtype=torch.float64), dim=-1)
    y[:, :50] = 1e3 + torch.rand(2, 50, 3, generator=g, dtype=torch.float64)
    for k in (1, 8):
        assert_same_neighbours(run(x, y, k), reference(x, y, k))
        assert_same_neighbours(run(y, x, k), reference(y, x, k))


def test_every_layout_is_read_with_its_own_strides():
    base_x, base_y = cloud("sphere", 2, GRID_SIZE, 7), cloud("sphere", 1, GRID_SIZE, 8)
    want = reference(base_x, base_y.expand(2, -1, -1), 4)
    x = base_x.transpose(1, 2).contiguous().transpose(1, 2)  # (B, N, D) with D outermost in memory
    y = base_y.expand(2, -1, -1)  # batch stride 0
    assert_same_neighbours(run(x, y, 4), want)
    padded = torch.zeros(2, GRID_SIZE * 2, 5, dtype=torch.float64)
    padded[:, ::2, 1:4] = base_y
    assert_same_neighbours(run(base_x, padded[:, ::2, 1:4], 4), want)  # sliced, both point and coordinate


def test_results_do_not_depend_on_the_thread_count():
    x, y = cloud("clusters", 2, GRID_SIZE, 9), cloud("clusters", 2, GRID_SIZE, 10)
    g = torch.rand(2, GRID_SIZE, 4, dtype=torch.float64)
    outs = []
    for threads in (1, 2):
        with num_threads(threads):
            d, i = run(x, y, 4)
            outs.append((d, i) + ops.knn_points_backward(g, x, y, i))
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def reference_backward(g, x, y, idx):
    """Autograd of the distances recomputed from the gathered neighbours."""
    x, y = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
    nb = torch.gather(y, 1, idx.clamp_min(0).reshape(y.shape[0], -1, 1).expand(-1, -1, y.shape[2]))
    d = ((x[:, :, None] - nb.reshape(*idx.shape, -1)) ** 2).sum(-1)
    d = torch.where(idx >= 0, d, torch.zeros_like(d))
    return torch.autograd.grad((d * g).sum(), (x, y))


def test_backward_matches_autograd_and_is_deterministic():
    x, y = cloud("lattice", 3, 400, 11), cloud("lattice", 3, 300, 12)
    xl, yl = torch.tensor([400, 100, 0]), torch.tensor([300, 0, 50])
    _, idx = run(x, y, 5, xl, yl)
    g = torch.randn(idx.shape, dtype=torch.float64).transpose(1, 2).contiguous().transpose(1, 2)  # strided
    gx, gy = ops.knn_points_backward(g, x, y, idx)
    wx, wy = reference_backward(g, x, y, idx)
    torch.testing.assert_close(gx, wx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gy, wy, rtol=1e-12, atol=1e-12)
    again = ops.knn_points_backward(g, x, y, idx)
    assert torch.equal(again[0], gx) and torch.equal(again[1], gy)


def test_gradcheck_and_double_backward_through_the_ops():
    x = cloud("cube", 2, 12, 13).requires_grad_(True)
    y = cloud("cube", 2, 9, 14).requires_grad_(True)
    xl, yl = torch.tensor([12, 7]), torch.tensor([9, 9])

    def dists(a, b):
        return ops.knn_points(a, b, xl, yl, 3)[0].nan_to_num(posinf=0.0)

    assert torch.autograd.gradcheck(dists, (x, y))
    assert torch.autograd.gradgradcheck(dists, (x, y))
    # The same through the public Chamfer distance, squared and not, with weights.
    w = torch.rand(2, 12, dtype=torch.float64)
    for squared in (True, False):
        f = lambda a, b: fastperc.chamfer_distance(a, b, xl, yl, x_weights=w, squared=squared)  # noqa: E731
        assert torch.autograd.gradcheck(f, (x, y))
        assert torch.autograd.gradgradcheck(f, (x, y))


def test_opcheck():
    x, y = cloud("cube", 2, 20, 15).requires_grad_(True), cloud("cube", 2, 16, 16).requires_grad_(True)
    xl, yl = torch.tensor([20, 11]), torch.tensor([16, 5])
    torch.library.opcheck(ops.knn_points.default, (x, y, xl, yl, 4))
    torch.library.opcheck(ops.knn_points.default, (x.float().detach(), y.float().detach(), xl, yl, 1))
    _, idx = run(x.detach(), y.detach(), 4, xl, yl)
    g = torch.randn(idx.shape, dtype=torch.float64)
    torch.library.opcheck(ops.knn_points_backward.default, (g.requires_grad_(True), x, y, idx))


def test_compiled_chamfer_loss_matches_eager():
    torch._dynamo.reset()
    xl, yl = torch.tensor([30, 18]), torch.tensor([25, 25])

    def loss(a, b):
        d_ab, _ = torch.ops.fastperc.knn_points(a, b, xl, yl, 1)
        d_ba, _ = torch.ops.fastperc.knn_points(b, a, yl, xl, 1)
        valid_a = torch.arange(a.shape[1])[None] < xl[:, None]
        return torch.where(valid_a, d_ab[..., 0], 0).sum() + d_ba[..., 0].sum()

    compiled = torch.compile(loss, fullgraph=True)
    x = cloud("sphere", 2, 30, 17, torch.float32).requires_grad_(True)
    y = cloud("sphere", 2, 25, 18, torch.float32).requires_grad_(True)
    out = compiled(x, y)
    gx, gy = torch.autograd.grad(out, (x, y))
    want = loss(x, y)
    wx, wy = torch.autograd.grad(want, (x, y))
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gy, wy)


def test_k_and_d_beyond_the_kernels_run_the_reference(recwarn):
    x, y = cloud("cube", 2, 30, 37), cloud("cube", 2, 50, 38)
    assert_same_neighbours(fastperc.knn_points(x, y, 40), reference(x, y, 40))
    wide_x, wide_y = torch.rand(1, 20, 40, dtype=torch.float64), torch.rand(1, 25, 40, dtype=torch.float64)
    assert_same_neighbours(fastperc.knn_points(wide_x, wide_y, 3), reference(wide_x, wide_y, 3))
    assert not [w for w in recwarn if "reference" in str(w.message)]  # not a fallback: no warning


def test_public_functions_run_the_kernel():
    x, y = cloud("sphere", 1, 50, 19), cloud("sphere", 1, 40, 20)
    d, i = fastperc.knn_points(x, y, 2)
    assert d.grad_fn is None  # no grad wanted
    x.requires_grad_(True)
    d, i = fastperc.knn_points(x, y, 2)
    assert "KnnPoints" in type(d.grad_fn).__name__ or "knn_points" in str(d.grad_fn).lower()


@pytest.mark.parametrize("case", [
    (lambda x, y, xl, yl: (x[..., :2], y, xl, yl, 1), "same batch size and D"),
    (lambda x, y, xl, yl: (x, y, xl, yl, 0), "k in"),
    (lambda x, y, xl, yl: (x, y, xl, yl, 33), "k in"),
    (lambda x, y, xl, yl: (x, y, torch.tensor([11, 3]), yl, 1), "outside"),
    (lambda x, y, xl, yl: (x, y, xl, torch.tensor([-1, 3]), 1), "outside"),
    (lambda x, y, xl, yl: (x, y, xl.int(), yl, 1), "int64"),
    (lambda x, y, xl, yl: (x, y, xl[:1], yl, 1), "x_lengths must be"),
    (lambda x, y, xl, yl: (x, y.float(), xl, yl, 1), "dtype"),
    (lambda x, y, xl, yl: (x.long(), y.long(), xl, yl, 1), "float"),
    (lambda x, y, xl, yl: (x[0], y[0], xl, yl, 1), "(B, N, D)"),
    (lambda x, y, xl, yl: (torch.zeros(2, 10, 33, dtype=torch.float64), torch.zeros(2, 8, 33, dtype=torch.float64),
                           xl, yl, 1), "D in"),
])
def test_bad_input_is_a_clear_error(case):
    make, message = case
    x, y = cloud("cube", 2, 10, 21), cloud("cube", 2, 8, 22)
    xl, yl = lengths(2, 10), lengths(2, 8)
    with pytest.raises(RuntimeError, match=message):
        ops.knn_points(*make(x, y, xl, yl))


def test_non_finite_points_are_errors_within_the_lengths_only():
    x, y = cloud("cube", 2, 10, 23), cloud("cube", 2, 8, 24)
    y[1, 5] = float("nan")
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        run(x, y, 1)
    run(x, y, 1, yl=torch.tensor([8, 5]))  # the NaN is padding
    x[0, 0, 1] = float("inf")
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        run(x, y, 1, yl=torch.tensor([8, 5]))


def test_backward_rejects_indices_out_of_range():
    x, y = cloud("cube", 1, 5, 25), cloud("cube", 1, 4, 26)
    g = torch.ones(1, 5, 1, dtype=torch.float64)
    for bad in (4, -2):
        idx = torch.zeros(1, 5, 1, dtype=torch.long)
        idx[0, 2] = bad
        with pytest.raises(RuntimeError, match="outside"):
            ops.knn_points_backward(g, x, y, idx)
    with pytest.raises(RuntimeError, match="shape"):
        ops.knn_points_backward(g[:, :4], x, y, torch.zeros(1, 5, 1, dtype=torch.long))


# The CUDA kernels on the GPU (skipped without one) and under the CPU emulator (tests/cuda_emu): the
# same source nvcc compiles, bit-identical to the CPU kernels under the emulator; on a GPU the indices
# and distances are still identical (float64, no FMA: knn_math.h) and the gradients within rounding.
# `backend` (conftest.py) gives the (ops, device) of each.


def on(device, *tensors):
    return [t.to(device) for t in tensors]


def assert_same_gradients(got, want, device):
    for a, b in zip(got, want):
        if device == "cpu":  # the emulator: the same sums in the same order
            assert torch.equal(a.cpu(), b)
        else:  # nvcc may fuse the multiply-adds of the sums
            torch.testing.assert_close(a.cpu(), b, rtol=1e-5 if b.dtype != torch.float64 else 1e-12, atol=1e-6)


@pytest.mark.parametrize("kind", ["cube", "lattice", "clusters"])
def test_cuda_kernels_match_the_cpu_kernels(backend, kind):
    dev_ops, device = backend
    # 700 targets of D = 3 cross a shared-memory tile (682 points); 3 batch items cross the emulator's
    # grid chunk (2).
    x, y = cloud(kind, 3, 300, 27), cloud(kind, 3, 700, 28)
    xl, yl = torch.tensor([300, 129, 0]), torch.tensor([700, 3, 5])
    for k in (1, 5):
        got = run(*on(device, x, y), k, *on(device, xl, yl), backend=dev_ops)
        want = run(x, y, k, xl, yl)
        assert torch.equal(got[1].cpu(), want[1]) and torch.equal(got[0].cpu(), want[0])
    g = torch.randn(want[1].shape, dtype=torch.float64)
    got = dev_ops.knn_points_backward(*on(device, g, x, y, want[1]))
    assert_same_gradients(got, ops.knn_points_backward(g, x, y, want[1]), device)
    again = dev_ops.knn_points_backward(*on(device, g, x, y, want[1]))
    assert all(torch.equal(a, b) for a, b in zip(got, again))  # deterministic: no atomics


def test_cuda_kernels_other_dimensions_dtypes_and_errors(backend):
    dev_ops, device = backend
    g = torch.Generator().manual_seed(29)
    for dim in (1, 5, 32):
        x = (torch.rand(2, 40, dim, generator=g, dtype=torch.float64) * 3).round()
        y = (torch.rand(2, 130, dim, generator=g, dtype=torch.float64) * 3).round()
        got = run(*on(device, x, y), 4, *on(device, lengths(2, 40), lengths(2, 130)), backend=dev_ops)
        assert_same_neighbours([t.cpu() for t in got], run(x, y, 4), rtol=0)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x, y = cloud("sphere", 1, 60, 30, dtype), cloud("sphere", 1, 80, 31, dtype)
        got = run(*on(device, x, y), 2, *on(device, lengths(1, 60), lengths(1, 80)), backend=dev_ops)
        want = run(x, y, 2)
        assert torch.equal(got[1].cpu(), want[1]) and torch.equal(got[0].cpu(), want[0])
        gd = torch.rand(want[1].shape, dtype=torch.float64).to(dtype)
        got = dev_ops.knn_points_backward(*on(device, gd, x, y, want[1]))
        for a, b in zip(got, ops.knn_points_backward(gd, x, y, want[1])):
            torch.testing.assert_close(a.cpu(), b)
    with pytest.raises(RuntimeError, match="outside"):
        dev_ops.knn_points(*on(device, x, y, torch.tensor([61]), lengths(1, 80)), 1)
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        bad = y.clone()
        bad[0, 3, 1] = float("nan")
        dev_ops.knn_points(*on(device, x, bad, lengths(1, 60), lengths(1, 80)), 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_public_chamfer_on_the_gpu_matches_the_cpu():
    x, y = cloud("sphere", 2, 3000, 35, torch.float32), cloud("sphere", 2, 2500, 36, torch.float32)
    xl, yl = torch.tensor([3000, 1000]), torch.tensor([2500, 2500])
    a, b = x.clone().requires_grad_(True), y.cuda().requires_grad_(True)
    want = fastperc.chamfer_distance(a, y, xl, yl)
    want.backward()
    got = fastperc.chamfer_distance(x.cuda().requires_grad_(True), b, xl.cuda(), yl.cuda())
    got.backward()
    torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=0)
    assert torch.isfinite(b.grad).all()
