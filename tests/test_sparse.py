"""Sparse convolution vs dense conv3d / conv_transpose3d on the densified grid, forward and backward;
kernel maps vs the reference; SparseTensor, voxelize and layers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import fastperc
from fastperc import reference
from fastperc.reference.sparse import coord_keys
from fastperc.sparse import SparseTensor, functional as SF, nn as snn
from conftest import cpu_isa, num_threads, rel_err, supported_isas



def random_sparse(batch=2, shape=(9, 8, 7), channels=3, density=0.3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand((batch,) + shape, generator=g) < density
    coords = torch.nonzero(mask).to(torch.int32)
    coords = coords[torch.randperm(len(coords), generator=g)]  # unsorted on purpose
    feats = torch.randn(len(coords), channels, generator=g, dtype=dtype)
    return SparseTensor(coords, feats, spatial_shape=shape)


def dense_weight(w, ks):
    """(K, Cin, Cout) -> conv3d's (Cout, Cin, kx, ky, kz)."""
    return w.reshape(*ks, w.shape[1], w.shape[2]).permute(4, 3, 0, 1, 2)


def at_sites(dense, coords):
    c = coords.long()
    return dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


@pytest.mark.parametrize("ks,dil", [(3, 1), (1, 1), (5, 1), (3, 2), ((3, 1, 5), (1, 2, 1))])
def test_submanifold_matches_dense(ks, dil):
    x = random_sparse()
    ks3, dl3 = SF.triple(ks, "k", 1), SF.triple(dil, "d", 1)
    w = torch.randn(int(np.prod(ks3)), 3, 4, dtype=torch.float64)
    out = SF.conv3d(x, w, kernel_size=ks, dilation=dil, mode="submanifold")
    pad = tuple((k - 1) // 2 * d for k, d in zip(ks3, dl3))
    dense = F.conv3d(x.to_dense(), dense_weight(w, ks3), padding=pad, dilation=dl3)
    assert torch.equal(out.coords, x.coords)
    torch.testing.assert_close(out.feats, at_sites(dense, x.coords), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ks,st,pd,dl", [(3, 2, 1, 1), (2, 2, 0, 1), (3, 1, 0, 1), (3, 2, 0, 2), (4, 3, 2, 1)])
def test_regular_matches_dense(ks, st, pd, dl):
    x = random_sparse(shape=(11, 10, 9))
    ks3 = SF.triple(ks, "k", 1)
    w = torch.randn(int(np.prod(ks3)), 3, 5, dtype=torch.float64)
    out = SF.conv3d(x, w, kernel_size=ks, stride=st, padding=pd, dilation=dl, mode="regular")
    dense = F.conv3d(x.to_dense(), dense_weight(w, ks3), stride=st, padding=pd, dilation=dl)
    support = F.conv3d((x.to_dense().abs().sum(1, keepdim=True) > 0).double(), torch.ones(1, 1, *ks3, dtype=torch.float64),
                       stride=st, padding=pd, dilation=dl)[:, 0] > 0
    expected_sites = torch.nonzero(support).to(torch.int32)
    assert out.spatial_shape == tuple(dense.shape[2:])
    assert torch.equal(out.coords, expected_sites), "output sites = where the dense support is non-empty"
    torch.testing.assert_close(out.feats, at_sites(dense, out.coords), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ks,st,pd", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_transposed_matches_dense(ks, st, pd):
    x = random_sparse(shape=(5, 6, 4), density=0.4)
    ks3 = SF.triple(ks, "k", 1)
    w = torch.randn(int(np.prod(ks3)), 3, 2, dtype=torch.float64)
    out = SF.conv3d(x, w, kernel_size=ks, stride=st, padding=pd, mode="transposed")
    wt = w.reshape(*ks3, 3, 2).permute(3, 4, 0, 1, 2)  # conv_transpose3d: (Cin, Cout, kx, ky, kz)
    dense = F.conv_transpose3d(x.to_dense(), wt, stride=st, padding=pd)
    assert out.spatial_shape == tuple(dense.shape[2:])
    torch.testing.assert_close(out.feats, at_sites(dense, out.coords), rtol=1e-10, atol=1e-12)
    # every non-zero of the dense result is an output site
    nz = torch.nonzero(dense.abs().sum(1) > 1e-12).to(torch.int32)
    keys = lambda c: set(map(tuple, c.tolist()))  # noqa: E731
    assert keys(nz) <= keys(out.coords)


def test_inverse_conv_returns_to_the_fine_sites_and_matches_dense_transpose():
    x = random_sparse(shape=(8, 8, 8))
    down = snn.SparseConv3d(3, 4, kernel_size=2, stride=2).double()
    up = snn.SparseInverseConv3d(4, 3, kernel_size=2, stride=2, bias=False).double()
    y = down(x)
    z = up(y)
    assert torch.equal(z.coords, x.coords)
    wt = up.weight.reshape(2, 2, 2, 4, 3).permute(3, 4, 0, 1, 2)
    dense = F.conv_transpose3d(y.to_dense(batch_size=2), wt, stride=2)
    torch.testing.assert_close(z.feats, at_sites(dense, x.coords), rtol=1e-10, atol=1e-12)


def test_gradients_match_dense_autograd():
    x = random_sparse(channels=4)
    feats = x.feats.clone().requires_grad_(True)
    w = torch.randn(27, 4, 3, dtype=torch.float64, requires_grad=True)
    out = SF.conv3d(SparseTensor(x.coords, feats, spatial_shape=x.spatial_shape), w, kernel_size=3, stride=2,
                    padding=1, mode="regular")
    g = torch.randn_like(out.feats)
    gf, gw = torch.autograd.grad((out.feats * g).sum(), (feats, w))
    f2 = x.feats.clone().requires_grad_(True)
    w2 = w.detach().clone().requires_grad_(True)
    xs = SparseTensor(x.coords, f2, spatial_shape=x.spatial_shape)
    dense = F.conv3d(xs.to_dense(), dense_weight(w2, (3, 3, 3)), stride=2, padding=1)
    ef, ew = torch.autograd.grad((at_sites(dense, out.coords) * g).sum(), (f2, w2))
    torch.testing.assert_close(gf, ef, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, ew, rtol=1e-10, atol=1e-12)


class _RecordMasks(TorchDispatchMode):
    """Records the output_mask of every sparse_conv_backward call made under it."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.fastperc.sparse_conv_backward.default:
            self.masks.append(list(args[5]) if len(args) > 5 else kwargs.get("output_mask"))
        return func(*args, **(kwargs or {}))


def test_autograd_computes_only_the_gradients_asked_for():
    x = random_sparse(channels=4)
    w = torch.randn(27, 4, 5, dtype=torch.float64)
    kmap = SF.kernel_map(x.coords, x.coords, (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3)
    g = torch.randn(len(x.coords), 5, dtype=torch.float64)
    fr, wr = x.feats.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ref_f, ref_w = torch.autograd.grad(reference.sparse.conv(fr, wr, kmap), (fr, wr), g)
    record = _RecordMasks()
    wr = w.clone().requires_grad_(True)  # features frozen (a first layer): the weight gradient only
    out = torch.ops.fastperc.sparse_conv(x.feats, wr, kmap)
    with record:
        (gw,) = torch.autograd.grad(out, wr, g)
    torch.testing.assert_close(gw, ref_w, rtol=1e-10, atol=1e-12)
    fr = x.feats.clone().requires_grad_(True)  # weights frozen: the feature gradient only
    out = torch.ops.fastperc.sparse_conv(fr, w, kmap)
    with record:
        (gf,) = torch.autograd.grad(out, fr, g)
    torch.testing.assert_close(gf, ref_f, rtol=1e-10, atol=1e-12)
    assert record.masks == [[False, True], [True, False]]


def test_gradcheck_and_opcheck():
    x = random_sparse(batch=1, shape=(4, 4, 4), channels=2, density=0.4)
    kmap = torch.ops.fastperc.sparse_kernel_map(x.coords, x.coords, [3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1], False)
    f = x.feats.clone().requires_grad_(True)
    w = torch.randn(27, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: torch.ops.fastperc.sparse_conv(a, b, kmap), (f, w))
    torch.library.opcheck(torch.ops.fastperc.sparse_conv.default, (f, w, kmap))
    torch.library.opcheck(torch.ops.fastperc.sparse_conv.default, (f.detach(), w.detach(), kmap))
    torch.library.opcheck(torch.ops.fastperc.sparse_conv_backward.default,
                          (torch.randn(len(x.coords), 3, dtype=torch.float64), f.detach(), w.detach(), kmap))
    # with the inverse map given (as the layers pass it from their cache): same gradients
    inv = SF.invert_map(kmap, len(x.coords))
    torch.library.opcheck(torch.ops.fastperc.sparse_conv.default, (f, w, kmap, inv))
    g = torch.randn(len(x.coords), 3, dtype=torch.float64)
    a = torch.ops.fastperc.sparse_conv_backward(g, f.detach(), w.detach(), kmap, inv)
    b = torch.ops.fastperc.sparse_conv_backward(g, f.detach(), w.detach(), kmap)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(RuntimeError, match="inv_map must be"):
        torch.ops.fastperc.sparse_conv_backward(g, f.detach(), w.detach(), kmap, inv[:, :-1])
    # output_mask: a gradient not asked for is not computed and comes back empty
    for mask in ([True, False], [False, True], [False, False]):
        args = (g, f.detach(), w.detach(), kmap, None, mask)
        torch.library.opcheck(torch.ops.fastperc.sparse_conv_backward.default, args)
        got = torch.ops.fastperc.sparse_conv_backward(*args)
        for want, full, part in zip(mask, a, got):
            assert torch.equal(part, full) if want else part.shape == (0,)
    torch.library.opcheck(torch.ops.fastperc.sparse_kernel_map.default,
                          (x.coords, x.coords, [3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1], False))
    # data-dependent output size: the fake kernel allocates a dynamic size
    torch.library.opcheck(torch.ops.fastperc.sparse_out_coords.default,
                          (x.coords, [2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], list(x.spatial_shape), False))


def test_kernel_map_and_out_coords_match_reference():
    x = random_sparse(shape=(12, 11, 10), density=0.2)
    for args in [((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), False), ((2, 3, 2), (2, 1, 2), (0, 1, 0), (1, 1, 1), False),
                 ((3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), True)]:
        ks, st, pd, dl, tr = args
        got = torch.ops.fastperc.sparse_out_coords(x.coords, list(ks), list(st), list(pd), list(dl), list(x.spatial_shape), tr)
        exp = reference.sparse.out_coords(x.coords, ks, st, pd, dl, x.spatial_shape, tr)
        assert torch.equal(got, exp)
        got_map = torch.ops.fastperc.sparse_kernel_map(x.coords, got, list(ks), list(st), list(pd), list(dl), tr)
        assert torch.equal(got_map, reference.sparse.kernel_map(x.coords, got, ks, st, pd, dl, tr))


# (sites, cin, cout): every rows-tile width of the CPU kernels (64, 32 and 16 columns, and padded
# ones), every weight-gradient tile shape (AVX-512 float32: 8 x 32 for 64/64, 8/32 and 5/48, 16 x 16
# for 16/16 and 3/5, 4 x 64 for 4/64) with rows read in place or through padded copies, several
# forward blocks (1024 outputs at 64 columns), and more than one weight-gradient block (16384). NEON's
# tiles: rows 5 x 4 (16 columns), 3 x 6 (24: 6/24) and 8 x 2 (8: 3/5); pairs 4 x 4, 8 x 2 and 2 x 8 (2/32).
TILE_CASES = [(3000, 64, 64), (3000, 5, 48), (3000, 16, 16), (3000, 3, 5), (3000, 4, 64), (20000, 8, 32),
              (3000, 6, 24), (3000, 2, 32)]


@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("sites,cin,cout", TILE_CASES)
def test_cpu_tiles_match_reference(isa, sites, cin, cout):
    side = round((sites / 0.3) ** (1 / 3))
    x = random_sparse(batch=1, shape=(side,) * 3, channels=cin, density=0.3, seed=sites + cin)
    n = len(x.coords)
    kmap = SF.kernel_map(x.coords, x.coords, (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(27, cin, cout, generator=g, dtype=torch.float64)
    grad = torch.randn(n, cout, generator=g, dtype=torch.float64)
    f = x.feats.clone().requires_grad_(True)
    wr = w.clone().requires_grad_(True)
    expected = reference.sparse.conv(f, wr, kmap)
    exp_gf, exp_gw = torch.autograd.grad(expected, (f, wr), grad)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        results = []
        for threads in (1, 2):
            with cpu_isa(isa), num_threads(threads):
                out = torch.ops.fastperc.sparse_conv(x.feats.to(dtype), w.to(dtype), kmap, None)
                gf, gw = torch.ops.fastperc.sparse_conv_backward(grad.to(dtype), x.feats.to(dtype), w.to(dtype), kmap, None)
            results.append((out, gf, gw))
        for got, exp in zip(results[0], (expected, exp_gf, exp_gw)):
            assert rel_err(got, exp) < tol
        assert all(torch.equal(a, b) for a, b in zip(*results)), "1 and 2 threads must agree bit for bit"


def square_map(kind, coords, seed=0):
    """(K, n) maps over the same n sites. A submanifold map is its own inverse read from the last
    offset to the first, which the CPU backward tries before building one; the others must be caught
    by its check and get an inverse built."""
    n = len(coords)
    g = torch.Generator().manual_seed(seed)
    if kind == "random":  # each offset a random one-to-one map of a third of the sites
        kmap = torch.full((27, n), -1, dtype=torch.int32)
        for k in range(27):
            outputs, inputs = torch.randperm(n, generator=g)[: n // 3], torch.randperm(n, generator=g)[: n // 3]
            kmap[k, outputs] = inputs.to(torch.int32)
        return kmap
    kernel = (1,) * 3 if kind == "submanifold 1x1x1" else (3,) * 3
    kmap = SF.kernel_map(coords, coords, kernel, (1,) * 3, tuple(k // 2 for k in kernel), (1,) * 3)
    k = 4  # an offset off the centre
    if kind == "submanifold, one pair dropped":
        kmap[k, int((kmap[k] >= 0).nonzero()[0])] = -1
    elif kind == "submanifold, one pair added":  # an output without an input there given an unread input
        unread = sorted(set(range(n)) - set(kmap[k][kmap[k] >= 0].tolist()))[0]
        kmap[k, int((kmap[k] < 0).nonzero()[0])] = unread
    return kmap


@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("kind", ["submanifold", "submanifold 1x1x1", "submanifold, one pair dropped",
                                  "submanifold, one pair added", "random"])
def test_cpu_backward_without_an_inverse_on_square_maps(isa, kind):
    x = random_sparse(batch=2, shape=(9, 8, 7), channels=5, density=0.3, seed=7)
    kmap = square_map(kind, x.coords)
    volume = kmap.shape[0]
    g = torch.Generator().manual_seed(2)
    w = torch.randn(volume, 5, 6, generator=g, dtype=torch.float64)
    grad = torch.randn(len(x.coords), 6, generator=g, dtype=torch.float64)
    f = x.feats.clone().requires_grad_(True)
    (exp_gf,) = torch.autograd.grad(reference.sparse.conv(f, w, kmap), (f,), grad)
    inv = SF.invert_map(kmap, len(x.coords))
    for threads in (1, 2):
        with cpu_isa(isa), num_threads(threads):
            for mask in ([True, True], [True, False]):
                gf, _ = torch.ops.fastperc.sparse_conv_backward(grad, x.feats, w, kmap, None, mask)
                assert rel_err(gf, exp_gf) < 1e-12
                given, _ = torch.ops.fastperc.sparse_conv_backward(grad, x.feats, w, kmap, inv, mask)
                assert torch.equal(gf, given), "the guessed, built and given inverses must give the same sums"


@pytest.mark.parametrize("isa", supported_isas())
def test_cpu_map_listing_reports_the_first_bad_entry(isa):
    # The CPU kernels list each offset's neighbours 16 (avx512) or 8 (avx2) map entries a step, then
    # entry by entry: a bad entry is found wherever it falls in a vector or in the tail, and the first
    # one (in output order, then offset order) is named; -1 entries and in-range rows pass.
    n_rows, n_out = 50, 45  # two 16-entry vectors and a 13-entry tail; five 8-entry vectors and 5
    g = torch.Generator().manual_seed(3)
    feats, w = torch.randn(n_rows, 4, generator=g), torch.randn(2, 4, 16, generator=g)
    kmap = torch.randint(-1, n_rows, (2, n_out), generator=g, dtype=torch.int32)
    with cpu_isa(isa):
        good = torch.ops.fastperc.sparse_conv(feats, w, kmap)
        assert rel_err(good, reference.sparse.conv(feats.double(), w.double(), kmap)) < 1e-6
        for pos in (0, 5, 7, 8, 15, 16, 31, 32, 39, 40, 44):
            for value in (-2, n_rows, 2**31 - 1, -(2**31)):
                bad = kmap.clone()
                bad[1, pos] = value
                bad[1, pos + 1:] = n_rows + 7  # later bad entries are not the first
                with pytest.raises(RuntimeError, match=f"got {value}$"):
                    torch.ops.fastperc.sparse_conv(feats, w, bad)
                bad[0, n_out - 1] = n_rows + 9  # the block's earlier offset comes first
                with pytest.raises(RuntimeError, match=f"got {n_rows + 9}$"):
                    torch.ops.fastperc.sparse_conv(feats, w, bad)


def test_float32_and_threads():
    x = random_sparse(shape=(20, 20, 20), channels=16, density=0.1, dtype=torch.float32)
    w = torch.randn(27, 16, 24)
    results = []
    for n in (1, 2):
        with num_threads(n):
            f = x.feats.clone().requires_grad_(True)
            out = SF.conv3d(SparseTensor(x.coords, f, spatial_shape=x.spatial_shape), w, mode="submanifold")
            (gf,) = torch.autograd.grad(out.feats.square().sum(), f)
            results.append((out.feats, gf))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    dense = F.conv3d(x.to_dense(), dense_weight(w, (3, 3, 3)), padding=1)
    assert ((results[0][0] - at_sites(dense, x.coords)).abs().max() / dense.abs().max()) < 1e-5


def test_edge_cases_and_errors():
    empty = SparseTensor(torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 3), spatial_shape=(4, 4, 4))
    out = SF.conv3d(empty, torch.randn(27, 3, 2), mode="submanifold")
    assert out.feats.shape == (0, 2)
    one = SparseTensor(torch.tensor([[0, 2, 2, 2]], dtype=torch.int32), torch.ones(1, 1, dtype=torch.float64), spatial_shape=(5, 5, 5))
    w = torch.randn(27, 1, 1, dtype=torch.float64)
    assert torch.allclose(SF.conv3d(one, w).feats, w[13])  # only the centre tap sees the site
    # batch items with no sites and sites on the boundary
    c = torch.tensor([[0, 0, 0, 0], [3, 4, 4, 4]], dtype=torch.int32)
    x = SparseTensor(c, torch.randn(2, 2, dtype=torch.float64), spatial_shape=(5, 5, 5))
    w = torch.randn(27, 2, 2, dtype=torch.float64)
    dense = F.conv3d(x.to_dense(), dense_weight(w, (3, 3, 3)), padding=1)
    torch.testing.assert_close(SF.conv3d(x, w).feats, at_sites(dense, c))
    with pytest.raises(ValueError, match="duplicate"):
        SparseTensor(torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]], dtype=torch.int32), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"\[0, 65535\]"):
        SparseTensor(torch.tensor([[0, -1, 1, 1]], dtype=torch.int32), torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"\[0, 32767\]"):
        SparseTensor(torch.tensor([[-1, 1, 1, 1]], dtype=torch.int32), torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"\[0, 32767\]"):
        SparseTensor(torch.tensor([[32768, 1, 1, 1]], dtype=torch.int32), torch.zeros(1, 1))
    with pytest.raises(TypeError, match="int32"):
        SparseTensor(torch.zeros(1, 4, dtype=torch.int64), torch.zeros(1, 1))
    # from_dense: the sites where the dense tensor is non-zero, checked against the key space too
    back = SparseTensor.from_dense(x.to_dense())
    order = torch.argsort(coord_keys(c))
    assert torch.equal(back.coords, c[order]) and torch.equal(back.feats, x.feats[order])
    deep = torch.zeros(32769, 1, 1, 1, 1)
    deep[32768] = 1.0
    with pytest.raises(ValueError, match=r"\[0, 32767\]"):
        SparseTensor.from_dense(deep)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        SparseTensor(torch.zeros(1, 3, dtype=torch.int32), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="inside spatial_shape"):
        SparseTensor(torch.tensor([[0, 5, 1, 1]], dtype=torch.int32), torch.zeros(1, 1), spatial_shape=(5, 5, 5))
    with pytest.raises(ValueError, match="weight must be"):
        SF.conv3d(x, torch.randn(27, 3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="odd kernel"):
        SF.conv3d(x, torch.randn(8, 2, 2, dtype=torch.float64), kernel_size=2)
    with pytest.raises(RuntimeError, match="duplicate site"):
        torch.ops.fastperc.sparse_kernel_map(torch.tensor([[0, 1, 1, 1]] * 2, dtype=torch.int32),
                                             torch.tensor([[0, 1, 1, 1]], dtype=torch.int32), [3] * 3, [1] * 3, [1] * 3, [1] * 3, False)
    with pytest.raises(RuntimeError, match="key space"):
        torch.ops.fastperc.sparse_kernel_map(torch.tensor([[32768, 1, 1, 1]], dtype=torch.int32),
                                             torch.tensor([[0, 1, 1, 1]], dtype=torch.int32), [3] * 3, [1] * 3, [1] * 3, [1] * 3, False)
    with pytest.raises(RuntimeError, match="kernel map entries"):
        torch.ops.fastperc.sparse_conv(torch.randn(2, 1), torch.randn(1, 1, 1), torch.tensor([[0, 5]], dtype=torch.int32))
    with pytest.raises(RuntimeError, match="kernel map entries.*got -2"):
        torch.ops.fastperc.sparse_conv(torch.randn(2, 1), torch.randn(1, 1, 1), torch.tensor([[0, -2]], dtype=torch.int32))
    with pytest.raises(RuntimeError, match="kernel map must be int32"):
        torch.ops.fastperc.sparse_conv(torch.randn(2, 1), torch.randn(1, 1, 1), torch.tensor([[0, 1]]))
    good, grad = torch.tensor([[0, 1]], dtype=torch.int32), torch.randn(2, 1)
    with pytest.raises(RuntimeError, match="kernel map entries"):
        torch.ops.fastperc.sparse_conv_backward(grad, torch.randn(2, 1), torch.randn(1, 1, 1), torch.tensor([[0, 7]], dtype=torch.int32))
    with pytest.raises(RuntimeError, match="inv_map entries"):  # inv_map rows index the outputs (2 here)
        torch.ops.fastperc.sparse_conv_backward(grad, torch.randn(2, 1), torch.randn(1, 1, 1), good, torch.tensor([[0, 2]], dtype=torch.int32))


@pytest.mark.parametrize("stride", [1, 2])
def test_kernel_map_at_the_corner_of_the_key_space(stride):
    # The largest keys (batch 32767, x = y = z = 65535) are ordinary sites, not the hash table's empty
    # marker or a sign flip.
    top = (1 << 16) - 1
    c = torch.tensor([[32767, top, top, top], [32767, top, top, top - 1], [0, 0, 0, 0]], dtype=torch.int32)
    args = ([3] * 3, [stride] * 3, [1] * 3, [1] * 3, False)
    kmap = torch.ops.fastperc.sparse_kernel_map(c, c, *args)
    torch.testing.assert_close(kmap, reference.sparse.kernel_map(c, c, *args))
    assert kmap[13].tolist() == ([0, 1, 2] if stride == 1 else [-1, -1, 2])


def test_sparse_tensor_to_keeps_sites_and_casts_features():
    x = random_sparse(channels=2)
    y = x.to("cpu", torch.float32)
    assert y.coords.dtype == torch.int32 and torch.equal(y.coords, x.coords)
    assert y.feats.dtype == torch.float32 and torch.equal(y.feats, x.feats.float())
    assert y.spatial_shape == x.spatial_shape and y.stride == x.stride and y.cache is not x.cache
    assert x.to().feats.dtype == torch.float64


def test_shipped_scan_loads_in_metres_and_keeps_the_full_scan_voxel_counts():
    pts = fastperc.data.lidar_scan()
    assert pts.shape == (196157, 3) and pts.dtype == torch.float32
    assert -75 < float(pts.min()) and float(pts.max()) < 76  # metres, not centimetres
    assert len(fastperc.sparse.voxelize(pts, 0.05).coords) == 172384  # the full scan: 173,011
    assert len(fastperc.sparse.voxelize(pts, 0.10).coords) == 125388  # the full scan: 125,655


def test_load_points_refuses_files_without_points(tmp_path):
    np.savez(tmp_path / "other.npz", xyz=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="expected an array 'pc'"):
        fastperc.data.load_points(tmp_path / "other.npz")
    np.savez(tmp_path / "flat.npz", pc=np.zeros(12))
    with pytest.raises(ValueError, match=r"must be \(N, 3\)"):
        fastperc.data.load_points(tmp_path / "flat.npz")


def test_voxelize_and_layers_on_the_real_scan():
    pts = fastperc.data.lidar_scan()[:20000]  # the copy shipped in fastperc/data
    x = fastperc.sparse.voxelize(pts, 0.2)
    assert len(x.coords) > 1000 and x.feats.shape[1] == 3
    assert x.feats.min() >= 0 and x.feats.max() < 1  # position inside the voxel
    first = fastperc.sparse.voxelize(pts, 0.2, reduce="first")
    assert torch.equal(first.coords, x.coords)
    net = torch.nn.Sequential(snn.SubMConv3d(3, 16), snn.SparseBatchNorm(16), snn.SparseReLU(),
                              snn.SparseConv3d(16, 32, kernel_size=2, stride=2), snn.SparseReLU(),
                              snn.SubMConv3d(32, 32), snn.SparseInverseConv3d(32, 16, kernel_size=2, stride=2))
    y = net(x)
    assert torch.equal(y.coords, x.coords) and y.feats.shape == (len(x.coords), 16)
    y.feats.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    pooled = snn.SparseGlobalPool("max")(y)
    assert pooled.shape == (1, 16)


def test_weight_converters_round_trip_and_dense():
    from fastperc.sparse import convert

    dense = torch.randn(4, 3, 3, 2, 5, dtype=torch.float64)
    w = convert.from_conv3d(dense)
    assert w.shape == (30, 3, 4)
    assert torch.equal(convert.to_conv3d(w, (3, 2, 5)), dense)
    sp = convert.to_spconv(w, (3, 2, 5))
    assert sp.shape == (4, 3, 2, 5, 3) and torch.equal(convert.from_spconv(sp), w)
    x = random_sparse()
    out = SF.conv3d(x, w, kernel_size=(3, 2, 5), padding=(1, 0, 2), mode="regular")
    ref = F.conv3d(x.to_dense(), dense, padding=(1, 0, 2))
    torch.testing.assert_close(out.feats, at_sites(ref, out.coords), rtol=1e-10, atol=1e-12)


def _ours_index(ix, iy, iz, sizes):
    return (ix * sizes[1] + iy) * sizes[2] + iz


@pytest.mark.parametrize("sizes", [(3, 3, 3), (2, 2, 2), (3, 2, 5), (1, 1, 1), (4, 3, 3)])
def test_minkowski_and_torchsparse_converters_follow_their_offset_order(sizes):
    """Each library's kernel-offset enumeration, written out from its documented rule (neither library
    installs here: MinkowskiEngine no longer builds, TorchSparse needs its CUDA build), must land each
    weight slice on fastperc's slice for the same spatial offset."""
    import itertools
    import math

    from fastperc.sparse import convert

    volume = math.prod(sizes)
    w = torch.randn(volume, 3, 4, dtype=torch.float64)
    # MinkowskiEngine kernel_region::coordinate_at (HYPER_CUBE): x is the fastest index.
    theirs = convert.to_minkowski(w, sizes)
    for k in range(volume):
        ix, rest = k % sizes[0], k // sizes[0]
        iy, iz = rest % sizes[1], rest // sizes[1]
        assert torch.equal(theirs[k], w[_ours_index(ix, iy, iz, sizes)])
    assert torch.equal(convert.from_minkowski(theirs, sizes), w)
    # torchsparse.nn.utils.get_kernel_offsets: x fastest for odd volumes, z fastest for even ones.
    axes = [range(-s // 2 + 1, s // 2 + 1) for s in sizes]  # their arange(-size // 2 + 1, size // 2 + 1)
    if volume % 2 == 1:
        offsets = [(x, y, z) for z in axes[2] for y in axes[1] for x in axes[0]]
    else:
        offsets = list(itertools.product(*axes))
    theirs = convert.to_torchsparse(w, sizes)
    if volume == 1:
        assert theirs.shape == (3, 4)
        theirs = theirs.unsqueeze(0)
    for k, (ox, oy, oz) in enumerate(offsets):
        idx = [o - a.start for o, a in zip((ox, oy, oz), axes)]
        assert torch.equal(theirs[k], w[_ours_index(*idx, sizes)])
    assert torch.equal(convert.from_torchsparse(convert.to_torchsparse(w, sizes), sizes), w)
    with pytest.raises(ValueError, match="K="):
        convert.from_minkowski(w[:-1] if volume > 1 else w.repeat(2, 1, 1), sizes)


def test_spconv_parity_if_installed():
    spc = pytest.importorskip("spconv.pytorch")
    from fastperc.sparse import convert

    x = random_sparse(shape=(10, 9, 8), channels=4, dtype=torch.float32)
    w = torch.randn(27, 4, 6)
    conv = spc.SubMConv3d(4, 6, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(convert.to_spconv(w, 3))
    # spconv's CPU forward is only right on one thread (with more it races: see benchmarks/RESULTS.md)
    with num_threads(1):
        ref = conv(spc.SparseConvTensor(x.feats, x.coords, list(x.spatial_shape), 2)).features
    torch.testing.assert_close(SF.conv3d(x, w).feats, ref, rtol=1e-5, atol=1e-5)


def test_compile_fullgraph_small_network():
    # A two-layer submanifold network on the raw ops: the kernel map is built inside the graph too.
    torch._dynamo.reset()
    x = random_sparse(shape=(10, 10, 10), channels=4, dtype=torch.float32)
    w1, w2 = torch.randn(27, 4, 8, requires_grad=True), torch.randn(27, 8, 2, requires_grad=True)

    def net(coords, feats):
        kmap = torch.ops.fastperc.sparse_kernel_map(coords, coords, [3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1], False)
        h = torch.relu(torch.ops.fastperc.sparse_conv(feats, w1, kmap))
        return torch.ops.fastperc.sparse_conv(h, w2, kmap)

    compiled = torch.compile(net, fullgraph=True)
    out = compiled(x.coords, x.feats)
    out.square().sum().backward()
    g1 = w1.grad.clone()
    w1.grad = None
    ref = net(x.coords, x.feats)
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g1, w1.grad, rtol=1e-4, atol=1e-4)


def test_pooling_matches_dense():
    x = random_sparse(shape=(8, 9, 6), channels=3)
    mx = snn.SparseMaxPool3d(2)(x)
    dense = x.to_dense()
    active = (dense.abs().sum(1, keepdim=True) > 0)
    neg = torch.where(active, dense, torch.full_like(dense, float("-inf")))
    ref = F.max_pool3d(neg, 2)
    torch.testing.assert_close(mx.feats, at_sites(ref, mx.coords))
    av = snn.SparseAvgPool3d(2)(x)
    sums = F.avg_pool3d(dense, 2, divisor_override=1)
    counts = F.avg_pool3d(active.double(), 2, divisor_override=1)
    torch.testing.assert_close(av.feats, at_sites(sums / counts.clamp(min=1), av.coords))
    # shares the kernel map (and output sites) of the matching regular convolution
    conv = SF.conv3d(x, torch.randn(8, 3, 2, dtype=torch.float64), kernel_size=2, stride=2, mode="regular")
    assert torch.equal(conv.coords, mx.coords)
    f = x.feats.clone().requires_grad_(True)
    snn.SparseMaxPool3d(2)(SparseTensor(x.coords, f, spatial_shape=x.spatial_shape)).feats.sum().backward()
    assert torch.isfinite(f.grad).all()


def test_minkunet_example_trains():
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "examples" / "minkunet_scan.py"), "--voxel", "0.5", "--steps", "4"],
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-3000:]
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", out.stdout)]
    assert len(losses) == 4 and losses[-1] < losses[0], out.stdout


def test_compile_fullgraph_layer_network_with_strided_and_inverse_convolutions():
    # The layers themselves, on a SparseTensor built inside the graph: a strided convolution (its output
    # sites are data dependent), batch norm, the inverse convolution back to the input sites and a
    # global pool; forward values and the gradients of every parameter match eager.
    torch._dynamo.reset()
    x = random_sparse(shape=(12, 12, 12), channels=4, batch=2, dtype=torch.float32)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = snn.SubMConv3d(4, 8)
            self.norm = snn.SparseBatchNorm(8)
            self.down = snn.SparseConv3d(8, 16, kernel_size=2, stride=2)
            self.up = snn.SparseInverseConv3d(16, 8, kernel_size=2, stride=2)
            self.pool = snn.SparseGlobalPool("max")

        def forward(self, coords, feats):
            h = snn.SparseReLU()(self.norm(self.stem(SparseTensor(coords, feats, spatial_shape=(12, 12, 12)))))
            return self.pool(self.up(snn.SparseReLU()(self.down(h))))

    net = Net().eval()
    out = torch.compile(net, fullgraph=True)(x.coords, x.feats)
    out.square().sum().backward()
    compiled_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    ref = net(x.coords, x.feats)
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for got, p in zip(compiled_grads, net.parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ks,pd,dl,tr", [
    ((3, 3, 3), (1, 1, 1), (1, 1, 1), False),   # submanifold 3x3x3
    ((3, 3, 5), (1, 1, 6), (1, 1, 3), False),   # z dilation 3: first z targets below 0 skipped
    ((3, 1, 4), (2, 0, 0), (2, 1, 1), False),   # even z kernel, no z padding
    ((3, 3, 3), (0, 0, 0), (1, 1, 1), True),    # transposed, stride 1
    ((3, 3, 3), (3, 3, 3), (1, 1, 1), True),    # transposed with padding > (K - 1) d: z offsets upwards
])
def test_stride_one_merge_join_map_matches_reference(ks, pd, dl, tr):
    """The stride-1 kernel map (merge join along z) against the reference, on sites at both z borders,
    for the map of a tensor's own sites (the same tensor) and for an equal copy of them."""
    x = random_sparse(shape=(9, 8, 12), density=0.25, seed=3)
    for out in (x.coords, x.coords.clone()):
        got = torch.ops.fastperc.sparse_kernel_map(x.coords, out, list(ks), [1, 1, 1], list(pd), list(dl), tr)
        assert torch.equal(got, reference.sparse.kernel_map(x.coords, out, ks, (1, 1, 1), pd, dl, tr))
    assert (x.coords[:, 3] == 0).any() and (x.coords[:, 3] == 11).any()


def test_coords_edited_in_place_rebuild_the_cached_maps():
    # Issue 11: after a convolution, x.coords[...] += 1 used to reuse the map of the old sites.
    x = random_sparse(seed=3)
    w = torch.randn(27, 3, 2, dtype=torch.float64)
    SF.conv3d(x, w)  # fills the cache
    with torch.no_grad():
        x.coords[:, 1] = x.spatial_shape[0] - 1 - x.coords[:, 1]  # mirror x: every site moves
    dense = F.conv3d(x.to_dense(), dense_weight(w, (3, 3, 3)), padding=1)
    torch.testing.assert_close(SF.conv3d(x, w).feats, at_sites(dense, x.coords))
    # Tensors sharing the sites (replace) see the rebuilt maps too.
    y = x.replace(x.feats * 2)
    torch.testing.assert_close(SF.conv3d(y, w).feats, 2 * at_sites(dense, x.coords))
    # An edit that breaks the sites is an error at the next convolution, not a stale map.
    x.coords[1] = x.coords[0]
    with pytest.raises(ValueError, match="duplicate"):
        SF.conv3d(x, w)
    with pytest.raises(AttributeError):
        x.coords = x.coords.clone()  # replacing the sites would bypass the cache: make a new SparseTensor


def test_inverse_conv_refuses_a_map_of_edited_fine_sites():
    x = random_sparse(seed=4)
    w = torch.randn(8, 3, 3, dtype=torch.float64)
    coarse = SF.conv3d(x, w, kernel_size=2, stride=2, mode="regular")
    SF.inverse_conv3d(coarse, torch.randn(8, 3, 3, dtype=torch.float64), kernel_size=2, stride=2)
    x.coords[:, 3] = x.spatial_shape[2] - 1 - x.coords[:, 3]
    with pytest.raises(ValueError, match="changed in place"):
        SF.inverse_conv3d(coarse, torch.randn(8, 3, 3, dtype=torch.float64), kernel_size=2, stride=2)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_voxelize_rejects_non_finite_points(bad):
    points = torch.rand(50, 3, dtype=torch.float64)
    points[7, 1] = bad
    with pytest.raises(ValueError, match="points must be finite: point 7"):
        fastperc.sparse.voxelize(points, 0.1)


def test_voxelize_rejects_spans_beyond_the_key_space_and_bad_voxel_sizes():
    points = torch.tensor([[-1e308, 0.0, 0.0], [1e308, 0.0, 0.0]], dtype=torch.float64)  # span overflows to inf
    with pytest.raises(ValueError, match="at most 65536 fit"):
        fastperc.sparse.voxelize(points, 1.0)
    for size in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError, match="voxel_size must be finite and > 0"):
            fastperc.sparse.voxelize(torch.rand(5, 3), size)
