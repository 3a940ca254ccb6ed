"""Every torch.ops.fastperc.* op called directly (they are public API too) with inconsistent arguments:
wrong shapes, overflowing sizes, maps of another tensor, mixed devices, meta tensors. Each must raise
a RuntimeError naming the problem, never crash, hang or return a wrong answer."""
import pytest
import torch

from fastperc import reference
from fastperc.functional.ssim import window_1d
from fastperc.sparse.functional import invert_map

ops = torch.ops.fastperc
C1, C2 = 1e-4, 9e-4
W = window_1d(11, 1.5, "gaussian", torch.float32, "cpu")
X = torch.rand(1, 2, 16, 16)
META = torch.device("meta")


def sites(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    keep = torch.randperm(len(grid), generator=g)[:n].sort().values
    return torch.cat([torch.zeros(n, 1, dtype=torch.int64), grid[keep]], 1).to(torch.int32)


COORDS = sites()
KMAP = reference.sparse.kernel_map(COORDS, COORDS, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
FEATS = torch.randn(len(COORDS), 4, dtype=torch.float64)
WEIGHT = torch.randn(27, 4, 3, dtype=torch.float64)
GRAD_OUT = torch.randn(len(COORDS), 3, dtype=torch.float64)
SUBM = ([3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1])


def other_inverse():
    """An inverse map in range and of the right shape, but of another map: each offset's pairs shifted
    to the next output (a cyclic relabelling), so every entry is plausible and every one is wrong."""
    inv = invert_map(KMAP, len(COORDS))
    return torch.where(inv >= 0, (inv + 1) % len(COORDS), inv)


def inverse_with_an_extra_pair():
    """The inverse map plus one pair the map does not list (an input with no output at offset 0 given
    an output with no input there): every pair the map lists is still read back right."""
    inv = invert_map(KMAP, len(COORDS))
    i = int((inv[0] < 0).nonzero()[0])
    inv[0, i] = int((KMAP[0] < 0).nonzero()[0])
    return inv


def map_feeding_one_input_twice():
    """KMAP with one more output reading, at offset 0, an input another output already reads there:
    in range and square, a valid forward map, but one without an inverse (an input's gradient would
    need two terms of that offset)."""
    kmap = KMAP.clone()
    j_read = int((kmap[0] >= 0).nonzero()[0])
    j_free = int((kmap[0] < 0).nonzero()[0])
    kmap[0, j_free] = kmap[0, j_read]
    return kmap


CASES = [
    # Gram and style loss
    ("gram: overflowing B * C * C", lambda: ops.gram(torch.zeros(1, 1, 1).expand(2**22, 2**21, 1), 1.0),
     "more than 2\\^63 - 1 elements"),
    ("gram: meta 2-D x", lambda: ops.gram(torch.empty(3, 4, device=META), 1.0), "x must have 3 dimensions"),
    ("gram_backward: meta grad, CPU x", lambda: ops.gram_backward(torch.empty(1, 2, 2, device=META), torch.rand(1, 2, 3), 1.0),
     "one device"),
    ("gram_backward: meta grad of the wrong shape",
     lambda: ops.gram_backward(torch.empty(1, 3, 3, device=META), torch.empty(1, 2, 5, device=META), 1.0),
     r"grad must be \(1, 2, 2\)"),
    ("style_loss: CPU x, meta target", lambda: ops.style_loss(torch.rand(1, 2, 3), torch.empty(1, 2, 2, device=META), 1.0, 1.0),
     "one device"),
    ("style_loss: meta target of the wrong dtype",
     lambda: ops.style_loss(torch.empty(1, 2, 3, device=META), torch.empty(1, 2, 2, device=META, dtype=torch.float64), 1.0, 1.0),
     "target must be torch.float32"),
    ("style_loss: target batch 3 for 2 images", lambda: ops.style_loss(torch.rand(2, 2, 3), torch.rand(3, 2, 2), 1.0, 1.0),
     r"target must be \(1 or 2, 2, 2\)"),
    # SSIM
    ("ssim: y of another shape", lambda: ops.ssim(X, X[:, :1], W, C1, C2, 1), "y must have the shape of x"),
    ("ssim: CPU x, meta y", lambda: ops.ssim(X, X.to(META), W, C1, C2, 1), "one device|y is on meta"),
    ("ssim: CPU x and y, meta window", lambda: ops.ssim(X, X, W.to(META), C1, C2, 1), "one device|window is on meta"),
    ("ssim: meta x, y of another shape", lambda: ops.ssim(X.to(META), X[:, :1].to(META), W.to(META), C1, C2, 1),
     "y must have the shape of x"),
    ("ssim: meta, image smaller than the valid window",
     lambda: ops.ssim(X[..., :8].to(META), X[..., :8].to(META), W.to(META), C1, C2, 0), "at least the window size"),
    ("ssim_map: even window", lambda: ops.ssim_map(X, X, W[:10], C1, C2, 1), "odd number of taps"),
    ("ssim_map: meta, padding 3", lambda: ops.ssim_map(X.to(META), X.to(META), W.to(META), C1, C2, 3), "padding must be"),
    ("ssim: padded input overflows int64",
     lambda: ops.ssim(*[torch.zeros(1, 1, 1, 1).expand(2**20, 2**20, 2**11, 2**11)] * 2, torch.ones(1).expand(2049),
                      C1, C2, 1), "padded input has more than 2\\^63 - 1 elements"),
    ("ssim: window too wide for the CPU tiles", lambda: ops.ssim(X, X, torch.ones(1).expand(4097), C1, C2, 1),
     "too wide for the CPU SSIM kernel"),
    ("ssim_backward: grad_ssim of the input's shape in valid mode",
     lambda: ops.ssim_backward(torch.ones(1, 2, 16, 16), None, None, X, X, W, C1, C2, 0), "grad_ssim must have shape"),
    ("ssim_backward: grad_l1 of the map's shape",
     lambda: ops.ssim_backward(torch.ones(1, 2, 6, 6), None, torch.ones(1, 2, 6, 6), X, X, W, C1, C2, 0),
     "grad_l1 must have shape"),
    ("ssim_backward: meta grad_cs, CPU inputs",
     lambda: ops.ssim_backward(torch.ones(1, 2, 16, 16), torch.ones(1, 2, 16, 16, device=META), None, X, X, W, C1, C2, 1),
     "one device|grad_cs is on meta"),
    ("ssim_backward: meta, grad_ssim of the wrong shape",
     lambda: ops.ssim_backward(torch.ones(1, 2, 5, 5, device=META), None, None, X.to(META), X.to(META), W.to(META),
                               C1, C2, 1), "grad_ssim must have shape"),
    # Sparse kernel maps and output sites
    ("sparse_kernel_map: kernel volume wraps int64, stride 1",
     lambda: ops.sparse_kernel_map(COORDS, COORDS, [2**22, 2**21, 2**21], [1, 1, 1], [0, 0, 0], [1, 1, 1], False),
     "must be <= 65536"),
    ("sparse_kernel_map: kernel volume wraps int64, stride 2, transposed",
     lambda: ops.sparse_kernel_map(COORDS, COORDS, [2**22, 2**21, 2**21], [2, 2, 2], [0, 0, 0], [1, 1, 1], True),
     "must be <= 65536"),
    ("sparse_kernel_map: stride past the key range",
     lambda: ops.sparse_kernel_map(COORDS, COORDS, [3, 3, 3], [70000, 1, 1], [0, 0, 0], [1, 1, 1], False),
     "must be <= 65536"),
    ("sparse_kernel_map: K x N_out entries overflow int64",
     lambda: ops.sparse_kernel_map(COORDS, torch.zeros(1, 4, dtype=torch.int32).expand(2**31 - 1, 4),
                                   [65536, 65536, 65536], [1, 1, 1], [0, 0, 0], [1, 1, 1], False),
     "more than 2\\^63 - 1 elements"),
    ("sparse_kernel_map: meta kernel volume wraps",
     lambda: ops.sparse_kernel_map(COORDS.to(META), COORDS.to(META), [2**22, 2**21, 2**21], [1, 1, 1], [0, 0, 0],
                                   [1, 1, 1], False), "must have 3 entries in"),
    ("sparse_kernel_map: CPU in_coords, meta out_coords",
     lambda: ops.sparse_kernel_map(COORDS, COORDS.to(META), *SUBM, False), "one device|non-CPU"),
    ("sparse_kernel_map: int64 coordinates", lambda: ops.sparse_kernel_map(COORDS.long(), COORDS, *SUBM, False),
     "int32"),
    ("sparse_kernel_map: duplicate sites", lambda: ops.sparse_kernel_map(COORDS[[0, 0]], COORDS, *SUBM, False),
     "duplicate site"),
    ("sparse_kernel_map: site outside the key space",
     lambda: ops.sparse_kernel_map(torch.tensor([[0, 70000, 0, 0]], dtype=torch.int32), COORDS, *SUBM, False),
     "outside the key space"),
    ("sparse_out_coords: one site reaching 2^48 outputs",
     lambda: ops.sparse_out_coords(COORDS[:1] * 0, [65536] * 3, [1] * 3, [0] * 3, [1] * 3, [1, 1, 1], True),
     "reaches 281474976710656 output sites"),
    ("sparse_out_coords: site outside spatial_shape",
     lambda: ops.sparse_out_coords(COORDS, [3] * 3, [2] * 3, [1] * 3, [1] * 3, [2, 2, 2], False),
     "outside spatial_shape"),
    ("sparse_out_coords: empty output grid",
     lambda: ops.sparse_out_coords(COORDS, [9] * 3, [1] * 3, [0] * 3, [1] * 3, [5, 5, 5], False),
     "empty or beyond"),
    # Sparse convolution
    ("sparse_conv: map of a larger tensor (rows past feats)",
     lambda: ops.sparse_conv(FEATS[:10], WEIGHT, KMAP), "entries must be -1 or rows of feats"),
    ("sparse_conv: map of another kernel size", lambda: ops.sparse_conv(FEATS, WEIGHT, KMAP[:8]), r"kernel map must be \(K = 27"),
    ("sparse_conv: int64 map", lambda: ops.sparse_conv(FEATS, WEIGHT, KMAP.long()), "int32"),
    ("sparse_conv: weight C_in differs", lambda: ops.sparse_conv(FEATS, WEIGHT[:, :3], KMAP), "C_in"),
    ("sparse_conv: meta feats, CPU map", lambda: ops.sparse_conv(FEATS.to(META), WEIGHT.to(META), KMAP),
     "one device"),
    ("sparse_conv: meta, map of another kernel size",
     lambda: ops.sparse_conv(FEATS.to(META), WEIGHT.to(META), KMAP[:8].to(META)), r"kernel map must be \(K = 27"),
    ("sparse_conv: inverse map of another tensor's shape",
     lambda: ops.sparse_conv(FEATS, WEIGHT, KMAP, invert_map(KMAP, len(COORDS))[:, :5]), "inv_map must be"),
    ("sparse_conv_backward: inverse of another map (in range, right shape)",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP, other_inverse()), "not the inverse of kmap"),
    ("sparse_conv_backward: inverse map with one pair dropped",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP,
                                      invert_map(KMAP, len(COORDS)).index_fill(1, torch.tensor([3]), -1)),
     "not the inverse of kmap"),
    ("sparse_conv_backward: inverse map with a pair the map does not list",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP, inverse_with_an_extra_pair()),
     "not the inverse of kmap"),
    ("sparse_conv_backward: inverse map rows past grad_out",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP, invert_map(KMAP, len(COORDS)) + 100),
     "inv_map entries must be -1 or rows of grad_out"),
    # A square map without an inverse is first read as its own mirrored inverse: with both gradients,
    # that listing checks the entries' range (no separate pass); with the feature gradient only, the
    # pass before it does. Column 5 past feats at every offset.
    ("sparse_conv_backward: square map with an entry past feats, no inverse",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP.index_fill(1, torch.tensor([5]), len(COORDS))),
     "entries must be -1 or rows of feats"),
    ("sparse_conv_backward: square map with an entry past feats, no inverse, feature gradient only",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP.index_fill(1, torch.tensor([5]), len(COORDS)),
                                      None, [True, False]), "entries must be -1 or rows of feats"),
    ("sparse_conv_backward: map of a larger tensor",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS[:10], WEIGHT, KMAP), "entries must be -1 or rows of feats"),
    # With a cached inverse, the weight gradient's listing checks kmap (no pass of its own): each mask.
    ("sparse_conv_backward: map of a larger tensor, cached inverse",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS[:10], WEIGHT, KMAP, torch.full((27, 10), -1, dtype=torch.int32)),
     "entries must be -1 or rows of feats"),
    ("sparse_conv_backward: map of a larger tensor, weight gradient only",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS[:10], WEIGHT, KMAP, None, [False, True]),
     "entries must be -1 or rows of feats"),
    ("sparse_conv_backward: map of a larger tensor, feature gradient only, cached inverse",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS[:10], WEIGHT, KMAP, torch.full((27, 10), -1, dtype=torch.int32),
                                      [True, False]), "entries must be -1 or rows of feats"),
    ("sparse_conv_backward: inverse map with one pair dropped, feature gradient only",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP,
                                      invert_map(KMAP, len(COORDS)).index_fill(1, torch.tensor([3]), -1), [True, False]),
     "not the inverse of kmap"),
    # Rebuilt, the inverse would keep one of the two outputs and drop the other's gradient.
    ("sparse_conv_backward: map that feeds an input to two outputs at an offset, no inverse",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, map_feeding_one_input_twice()), "to two outputs at"),
    ("sparse_conv_backward: map that feeds an input to two outputs, feature gradient only",
     lambda: ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, map_feeding_one_input_twice(), None, [True, False]),
     "to two outputs at"),
    ("sparse_conv_backward: grad_out of the wrong width",
     lambda: ops.sparse_conv_backward(GRAD_OUT[:, :2], FEATS, WEIGHT, KMAP), "grad_out must be"),
    ("sparse_conv_backward: meta grad_out, CPU rest",
     lambda: ops.sparse_conv_backward(GRAD_OUT.to(META), FEATS, WEIGHT, KMAP), "one device|grad_out is on"),
    ("sparse_conv_backward: meta, grad_out of the wrong length",
     lambda: ops.sparse_conv_backward(GRAD_OUT[:5].to(META), FEATS.to(META), WEIGHT.to(META), KMAP.to(META)),
     "grad_out must be"),
]


@pytest.mark.parametrize("call,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_raw_op_rejects(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


def test_consistent_meta_calls_still_give_shapes():
    # The fake kernels' checks must not reject what the real kernels take.
    m = ops.ssim_map(X.to(META), X.to(META), W.to(META), C1, C2, 0)
    assert m.shape == (1, 2, 6, 6) and m.device.type == "meta"
    gx, gy = ops.ssim_backward(m, None, torch.ones(1, 2, 16, 16, device=META), X.to(META), X.to(META), W.to(META),
                               C1, C2, 0, [True, False])
    assert gx.shape == X.shape and gy.shape == (0,)
    out = ops.sparse_conv(FEATS.to(META), WEIGHT.to(META), KMAP.to(META), KMAP.to(META)[:, :len(COORDS)])
    assert out.shape == (len(COORDS), 3)
    assert ops.sparse_kernel_map(COORDS.to(META), COORDS.to(META), *SUBM, False).shape == (27, len(COORDS))
    loss, residual = ops.style_loss(torch.empty(2, 3, 5, device=META), torch.empty(1, 3, 3, device=META), 1.0, 1.0)
    assert loss.shape == () and residual.shape == (2, 3, 3)


def test_backward_with_the_right_inverse_map_matches_the_rebuilt_one():
    # The consistency check must accept the inverse the layers cache.
    inv = invert_map(KMAP, len(COORDS))
    with_inv = ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP, inv)
    rebuilt = ops.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP, None)
    for a, b in zip(with_inv, rebuilt):
        assert torch.equal(a, b)


def test_emulated_cuda_backward_rejects_an_inconsistent_inverse_map():
    from cuda_emu import load_emulated_ops

    emu = load_emulated_ops()
    with pytest.raises(RuntimeError, match="not the inverse of kmap"):
        emu.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP, other_inverse())
    emu.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, KMAP, invert_map(KMAP, len(COORDS)))  # the right one passes
    with pytest.raises(RuntimeError, match="to two outputs at"):  # no inverse to rebuild
        emu.sparse_conv_backward(GRAD_OUT, FEATS, WEIGHT, map_feeding_one_input_twice())
    with pytest.raises(RuntimeError, match="must be <= 65536"):
        emu.sparse_kernel_map(COORDS, COORDS, [2**22, 2**21, 2**21], [1, 1, 1], [0, 0, 0], [1, 1, 1], False)
