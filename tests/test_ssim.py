"""SSIM kernels vs the pure-PyTorch reference (every padding, 2D and 3D, forward and both gradients),
and the reference itself vs known values."""
import importlib

import pytest
import torch

import fastperc
from fastperc import reference
from fastperc.functional.ssim import window_1d
from conftest import cpu_isa, num_threads, rel_err, supported_isas

# The module (the package exports its ssim function under the same name): its maps() gives the CS map too.
reference_ssim = importlib.import_module("fastperc.reference.ssim")

PADS = {"valid": 0, "zero": 1, "reflect": 2}
C1, C2 = 0.01**2, 0.03**2


def pair(shape, dtype=torch.float64, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x.to(dtype), y.to(dtype)


def win(k=11, dtype=torch.float64, kind="gaussian", sigma=1.5):
    return window_1d(k, sigma, kind, dtype, "cpu")


# (1, 1, 150, 610): several 2D tiles along H and W, of equal sizes other than the nominal 64 x 256,
# forward and backward. The last: several volume tiles along D, H and W.
SHAPES = [(2, 3, 40, 37), (1, 1, 11, 11), (1, 4, 64, 300), (1, 1, 150, 610), (3, 1, 12, 19), (1, 2, 13, 15, 17),
          (2, 1, 11, 12, 30), (1, 1, 45, 30, 70)]


@pytest.mark.parametrize("padding", list(PADS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_float64(shape, padding):
    x, y = pair(shape)
    w = win()
    got = torch.ops.fastperc.ssim(x, y, w, C1, C2, PADS[padding])
    exp = reference.ssim(x, y, w, C1, C2, PADS[padding])
    for a, b in zip(got, exp):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    m = torch.ops.fastperc.ssim_map(x, y, w, C1, C2, PADS[padding])
    torch.testing.assert_close(m, reference.ssim_map(x, y, w, C1, C2, PADS[padding]), rtol=1e-10, atol=1e-10)


BACKWARD_CASES = [
    (shape, padding)
    for shape in [(2, 3, 40, 37), (1, 1, 11, 11), (1, 1, 6, 7), (1, 1, 150, 610), (1, 2, 13, 12, 11),
                  (1, 1, 45, 30, 70)]
    for padding in PADS
    # an image smaller than the window is an error for "valid" (tested in test_ssim_api)
    if not (padding == "valid" and min(shape[2:]) < (5 if min(shape[2:]) < 11 else 11))
]


@pytest.mark.parametrize("shape,padding", BACKWARD_CASES, ids=str)
def test_backward_float64_both_inputs_all_outputs(shape, padding):
    k = 5 if min(shape[2:]) < 11 else 11
    x, y = pair(shape)
    w = win(k)
    x.requires_grad_(True)
    y.requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(shape[:2], generator=g, dtype=torch.float64) for _ in range(3)]
    out = torch.ops.fastperc.ssim(x, y, w, C1, C2, PADS[padding])
    got = torch.autograd.grad(sum((o * v).sum() for o, v in zip(out, weights)), (x, y))
    ref = reference.ssim(x, y, w, C1, C2, PADS[padding])
    exp = torch.autograd.grad(sum((o * v).sum() for o, v in zip(ref, weights)), (x, y))
    for a, b in zip(got, exp):
        assert rel_err(a, b) < 1e-10
    m = torch.ops.fastperc.ssim_map(x, y, w, C1, C2, PADS[padding])
    wm = torch.randn(m.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((m * wm).sum(), (x, y))
    exp = torch.autograd.grad((reference.ssim_map(x, y, w, C1, C2, PADS[padding]) * wm).sum(), (x, y))
    for a, b in zip(got, exp):
        assert rel_err(a, b) < 1e-10


@pytest.mark.parametrize("k,kind", [(1, "gaussian"), (3, "gaussian"), (7, "uniform"), (31, "gaussian"), (33, "uniform")])
def test_window_sizes(k, kind):
    x, y = pair((1, 2, 70, 41))
    w = win(k, kind=kind, sigma=k / 5 + 0.1)
    for padding in PADS.values():
        got = torch.ops.fastperc.ssim(x, y, w, C1, C2, padding)[0]
        exp = reference.ssim(x, y, w, C1, C2, padding)[0]
        torch.testing.assert_close(got, exp, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    # Inputs are rounded to dtype, then everything runs in float32: compared with the float64 result
    # of the same rounded values. Mean to 1e-6, per pixel to 1e-4, gradients to 1e-4 (float32) or the
    # dtype's rounding of the gradient (half precision).
    x, y = pair((2, 3, 48, 50))
    x, y = x.to(dtype), y.to(dtype)
    xd, yd = x.double(), y.double()
    for padding in PADS.values():
        s = torch.ops.fastperc.ssim(x, y, win(dtype=torch.float32), C1, C2, padding)[0]
        assert s.dtype == torch.float32
        assert (s.double() - reference.ssim(xd, yd, win(), C1, C2, padding)[0]).abs().max() < 1e-6
        m = torch.ops.fastperc.ssim_map(x, y, win(dtype=torch.float32), C1, C2, padding)
        assert (m.double() - reference.ssim_map(xd, yd, win(), C1, C2, padding)).abs().max() < 1e-4
    xg = x.clone().requires_grad_(True)
    fastperc.ssim(xg, y, 1.0).mul(1e4).backward()
    xr = xd.clone().requires_grad_(True)
    fastperc.ssim(xr, yd, 1.0).mul(1e4).backward()
    assert xg.grad.dtype == dtype
    assert rel_err(xg.grad, xr.grad) < {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]


@pytest.mark.parametrize("isa", supported_isas())
def test_every_isa(isa):
    x, y = pair((1, 2, 45, 300))
    xr = x.clone().requires_grad_(True)
    with cpu_isa(isa):
        s = torch.ops.fastperc.ssim(xr, y, win(), C1, C2, 2)[0].sum()
        (g,) = torch.autograd.grad(s, xr)
    ref = reference.ssim(xr, y, win(), C1, C2, 2)[0].sum()
    (gr,) = torch.autograd.grad(ref, xr)
    torch.testing.assert_close(s, ref, rtol=1e-12, atol=0)
    assert rel_err(g, gr) < 1e-11


def skewed_win(k=11, dtype=torch.float64):
    """A window that does not read the same backwards: the filters' unfolded path (a symmetric window
    has its tap pairs folded)."""
    w = win(k) * torch.linspace(0.5, 1.5, k, dtype=torch.float64)
    return (w / w.sum()).to(dtype)


# Output widths (valid padding, 11 taps) below one vector of every ISA, one vector, and past whole
# register blocks with tails of every kind: the filters end each row with a vector shifted back onto
# outputs already written, and fall back to scalars only below one vector. Symmetric windows (tap
# pairs folded, blocks of 8 vectors) and others (4 vectors) take different code.
@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("width", [13, 18, 26, 77, 266, 267, 311])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("window", ["gaussian", "skewed"])
def test_every_isa_row_tails(isa, width, dtype, window):
    w64 = win() if window == "gaussian" else skewed_win()
    w = w64.to(dtype)
    x, y = pair((1, 2, 29, width), dtype=dtype)
    xr = x.clone().requires_grad_(True)
    with cpu_isa(isa):
        got = torch.ops.fastperc.ssim(xr, y, w, C1, C2, 0)
        (g,) = torch.autograd.grad(got[0].sum() + 0.5 * got[1].sum(), xr)  # the CS weight on and off below
        (g_ssim,) = torch.autograd.grad(torch.ops.fastperc.ssim(xr, y, w, C1, C2, 0)[0].sum(), xr)
        m = torch.ops.fastperc.ssim_map(x, y, w, C1, C2, 0)
    xd = xr.detach().double().requires_grad_(True)
    exp = reference.ssim(xd, y.double(), w64, C1, C2, 0)
    (ge,) = torch.autograd.grad(exp[0].sum() + 0.5 * exp[1].sum(), xd)
    (ge_ssim,) = torch.autograd.grad(reference.ssim(xd, y.double(), w64, C1, C2, 0)[0].sum(), xd)
    tol = 1e-11 if dtype == torch.float64 else 2e-5
    for a, b in zip(got, exp):
        assert rel_err(a.double(), b) < tol
    assert rel_err(m.double(), reference.ssim_map(x.double(), y.double(), w64, C1, C2, 0)) < tol
    assert rel_err(g.double(), ge) < tol * 10
    assert rel_err(g_ssim.double(), ge_ssim) < tol * 10


# The H pass takes kFilterRows output rows at a time (8 under avx512/NEON, 3 avx2, 2 generic) for the
# symmetric windows compiled with their width (3 to 15 taps), the last group shifted back onto rows
# already written; fewer output rows than a group, and other widths, go a row at a time. Each compiled
# width and one past them, at heights from one output row to past two groups, volumes (whose D pass
# runs row by row) included, on every ISA, forward and backward against the float64 reference.
@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("k", [3, 5, 7, 9, 11, 13, 15, 17])
def test_every_isa_fixed_window_widths(isa, k):
    w = win(k, sigma=k / 5 + 0.1)
    shapes = [(1, 2, k + rows - 1, 37) for rows in (1, 2, 3, 7, 8, 9, 17)] + [(1, 1, k + 8, k + 2, 21)]
    for shape in shapes:
        x, y = pair(shape)
        xr = x.clone().requires_grad_(True)
        with cpu_isa(isa):
            got = torch.ops.fastperc.ssim(xr, y, w, C1, C2, 0)
            (g,) = torch.autograd.grad(got[0].sum() + 0.5 * got[1].sum(), xr)
        xd = x.clone().requires_grad_(True)
        exp = reference.ssim(xd, y, w, C1, C2, 0)
        (ge,) = torch.autograd.grad(exp[0].sum() + 0.5 * exp[1].sum(), xd)
        for a, b in zip(got, exp):
            assert rel_err(a, b) < 1e-11, shape
        assert rel_err(g, ge) < 1e-10, shape


# SSIM and CS take the two variances only as their sum, so the kernels filter x^2 + y^2 as one map.
# Its tap terms are written so that x == y gives exactly twice E[xy] (SSIM exactly 1) and swapping x
# and y changes no bit, however each ISA's build contracts multiply-adds (ssim_tile_body.inc): a lone
# x x + y y contracted into fma(x, x, y y) broke the symmetry under avx2 and avx512 by 1.4e-15.
@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("window", ["gaussian", "skewed"])
@pytest.mark.parametrize("shape", [(2, 3, 30, 31), (1, 2, 15, 16, 17)], ids=str)
def test_every_isa_exact_identity_and_symmetry(isa, window, shape):
    w64 = win() if window == "gaussian" else skewed_win()
    x64, y64 = pair(shape)
    for dtype in (torch.float64, torch.float32):
        x, y, w = x64.to(dtype), y64.to(dtype), w64.to(dtype)
        with cpu_isa(isa):
            for padding in PADS.values():
                assert torch.ops.fastperc.ssim_map(x, x, w, C1, C2, padding).eq(1.0).all(), (dtype, padding)
                a = torch.ops.fastperc.ssim_map(x, y, w, C1, C2, padding)
                b = torch.ops.fastperc.ssim_map(y, x, w, C1, C2, padding)
                assert torch.equal(a, b), (dtype, padding)
                assert (a < 1).any()


# The |x - y| term's gradient, sign(x - y) * gl, is branch-free (a branch on the sign mispredicted on
# every other pixel of a noisy image). Half the rows here tie exactly (sign 0); gl is one value per
# plane (what the mean reductions pass, expanded) or one per element, for every padding and ISA.
@pytest.mark.parametrize("isa", supported_isas())
def test_every_isa_l1_term_gradient_with_ties(isa):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 2, 40, 37, generator=g, dtype=torch.float64)
    y = x.clone()
    y[..., ::2, :] += 0.05 * torch.randn(1, 2, 20, 37, generator=g, dtype=torch.float64)
    per_plane = torch.tensor([0.7, -0.4], dtype=torch.float64).reshape(1, 2, 1, 1).expand(1, 2, 40, 37)
    per_element = torch.randn(1, 2, 40, 37, generator=g, dtype=torch.float64)
    for name, padding in PADS.items():
        map_shape = reference.ssim_map(x, y, win(), C1, C2, padding).shape
        gs = torch.randn(map_shape, generator=g, dtype=torch.float64)
        for gl in (per_plane, per_element):
            with cpu_isa(isa):
                got = torch.ops.fastperc.ssim_backward(gs, None, gl, x, y, win(), C1, C2, padding, [True, True])
            xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
            loss = (reference.ssim_map(xr, yr, win(), C1, C2, padding) * gs).sum() + (gl * (xr - yr).abs()).sum()
            for a, b in zip(got, torch.autograd.grad(loss, (xr, yr))):
                torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13, msg=f"{name} padding")


# With "same" padding, 2D images wide enough for two tiles get an edge tile at each end of W (a
# quarter of the nominal 256, or the window's reach where that is more), so that the tiles between
# read their input in place (ssim_w_tiles in csrc/cpu/ssim_cpu.h). Widths just past and just short of
# where the edges start (384 outputs forward; 384 padded elements backward, so 383 has them in the
# backward only), two middle tiles (700), windows of 11, 21 and 45 taps (reach 3r = 66 past the
# quarter tile), both gradients with SSIM and CS weights per pixel, every ISA: float64 against the
# reference, float32 against the float64 kernel.
@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("k,shape", [(11, (1, 2, 20, 384)), (11, (1, 1, 17, 383)), (11, (1, 2, 33, 700)),
                                     (21, (2, 1, 25, 450)), (45, (1, 1, 50, 500))], ids=str)
def test_every_isa_same_padding_edge_tiles(isa, k, shape):
    w = win(k, sigma=k / 7)
    x, y = pair(shape)
    g = torch.Generator().manual_seed(5)
    for name in ("zero", "reflect"):
        padding = PADS[name]
        gs, gc = torch.randn((2,) + shape, generator=g, dtype=torch.float64)
        results = {}
        for dtype in (torch.float64, torch.float32):
            with cpu_isa(isa):
                out = torch.ops.fastperc.ssim(x.to(dtype), y.to(dtype), w.to(dtype), C1, C2, padding)
                m = torch.ops.fastperc.ssim_map(x.to(dtype), y.to(dtype), w.to(dtype), C1, C2, padding)
                grads = torch.ops.fastperc.ssim_backward(gs.to(dtype), gc.to(dtype), None, x.to(dtype), y.to(dtype),
                                                         w.to(dtype), C1, C2, padding, [True, True])
            results[dtype] = [t.double() for t in out + (m,) + tuple(grads)]
        xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        ssim_map, cs_map = reference_ssim.maps(xr, yr, w, C1, C2, padding)
        exp = [t.detach() for t in reference.ssim(xr, yr, w, C1, C2, padding)] + [ssim_map.detach()]
        exp += list(torch.autograd.grad((ssim_map * gs).sum() + (cs_map * gc).sum(), (xr, yr)))
        for i, (a, b, c) in enumerate(zip(results[torch.float64], exp, results[torch.float32])):
            assert rel_err(a, b) < 1e-10, (name, i)
            assert rel_err(c, a) < 1e-4, (name, i)


@pytest.mark.parametrize("shape", [(2, 3, 130, 300), (1, 2, 70, 50, 80)], ids=str)
def test_one_and_two_threads_identical(shape):
    x, y = pair(shape, dtype=torch.float32)
    out = []
    for n in (1, 2):
        with num_threads(n):
            xr = x.clone().requires_grad_(True)
            res = torch.ops.fastperc.ssim(xr, y, win(dtype=torch.float32), C1, C2, 1)
            (g,) = torch.autograd.grad(res[0].sum() + res[2].sum(), xr)
            out.append(res + (g, torch.ops.fastperc.ssim_map(x, y, win(dtype=torch.float32), C1, C2, 0)))
    for a, b in zip(*out):
        assert torch.equal(a, b)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "expanded"])
def test_non_contiguous(layout):
    x, y = pair((2, 3, 40, 44))
    if layout == "channels_last":
        a, b = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        a, b = x.transpose(2, 3), y.transpose(2, 3)
    elif layout == "sliced":
        a, b = x[:, :, ::2, 1::2], y[:, :, ::2, 1::2]
    else:
        a, b = x[:1].expand(3, -1, -1, -1), y[:1].expand(3, -1, -1, -1)
    for padding in PADS.values():
        got = torch.ops.fastperc.ssim(a, b, win(), C1, C2, padding)
        exp = torch.ops.fastperc.ssim(a.contiguous(), b.contiguous(), win(), C1, C2, padding)
        for p, q in zip(got, exp):
            torch.testing.assert_close(p, q, rtol=1e-13, atol=0)
    ar = a.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(fastperc.ssim(ar, b, 1.0, padding="reflect"), ar)
    ac = a.contiguous().requires_grad_(True)
    (gc,) = torch.autograd.grad(fastperc.ssim(ac, b.contiguous(), 1.0, padding="reflect"), ac)
    torch.testing.assert_close(g, gc, rtol=1e-12, atol=1e-16)


# --- the reference itself ---------------------------------------------------------------------


def test_identical_images_give_exactly_one():
    x, _ = pair((2, 3, 32, 32))
    for padding in PADS:
        assert fastperc.ssim(x, x, 1.0, padding=padding).item() == 1.0
        assert reference.ssim(x, x, win(), C1, C2, PADS[padding])[0].eq(1.0).all()
    assert torch.equal(fastperc.ssim(x, x, 1.0, reduction="map"), torch.ones(2, 3, 22, 22, dtype=torch.float64))


def test_hand_computed_small_case():
    # 3x3 uniform window on 3x3 images, valid: one output pixel, moments by hand.
    x = torch.tensor([[0.0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=torch.float64).reshape(1, 1, 3, 3)
    y = torch.tensor([[1.0, 1, 1], [2, 2, 2], [3, 3, 4]], dtype=torch.float64).reshape(1, 1, 3, 3)
    mx, my = 4.0, 19 / 9
    sxx = (x**2).mean().item() - mx**2
    syy = (y**2).mean().item() - my**2
    sxy = (x * y).mean().item() - mx * my
    c1, c2 = (0.01 * 8) ** 2, (0.03 * 8) ** 2
    expected = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    got = fastperc.ssim(x, y, 8.0, win_size=3, window="uniform")
    assert abs(got.item() - expected) < 1e-14
    assert abs(reference.ssim(x, y, win(3, kind="uniform"), c1, c2, 0)[0].item() - expected) < 1e-14


def test_symmetry():
    x, y = pair((2, 3, 30, 31))
    for padding in PADS:
        a = fastperc.ssim(x, y, 1.0, padding=padding, reduction="map")
        b = fastperc.ssim(y, x, 1.0, padding=padding, reduction="map")
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


def test_constant_images_no_nan():
    x = torch.full((1, 2, 20, 20), 0.5)
    y = torch.full((1, 2, 20, 20), 0.25, requires_grad=True)
    for padding in PADS:
        s = fastperc.ssim(x, y, 1.0, padding=padding)
        (g,) = torch.autograd.grad(s, y)
        assert torch.isfinite(s) and torch.isfinite(g).all()
    assert fastperc.ssim(x, x, 1.0).item() == 1.0


@pytest.mark.parametrize("shape", [(2, 3, 40, 37), (1, 1, 45, 30, 70)], ids=str)
@pytest.mark.parametrize("padding", list(PADS))
def test_backward_output_mask_computes_only_what_is_asked(shape, padding):
    """Each gradient alone equals its value from the full backward (bit for bit: the same arithmetic),
    an unwanted one comes back empty, and autograd asks only for the inputs that require grad."""
    x, y = pair(shape)
    w = win(11)
    g = torch.Generator().manual_seed(2)
    map_shape = torch.ops.fastperc.ssim_map(x, y, w, C1, C2, PADS[padding]).shape
    gs = torch.randn(map_shape, generator=g, dtype=torch.float64)
    gl = torch.randn(shape, generator=g, dtype=torch.float64)
    args = (gs, gs * 0.5, gl, x, y, w, C1, C2, PADS[padding])
    gx, gy = torch.ops.fastperc.ssim_backward(*args)
    only_x = torch.ops.fastperc.ssim_backward(*args, [True, False])
    only_y = torch.ops.fastperc.ssim_backward(*args, [False, True])
    assert torch.equal(only_x[0], gx) and only_x[1].shape == (0,)
    assert torch.equal(only_y[1], gy) and only_y[0].shape == (0,)
    assert all(t.shape == (0,) for t in torch.ops.fastperc.ssim_backward(*args, [False, False]))
    xr = x.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(torch.ops.fastperc.ssim(xr, y, w, C1, C2, PADS[padding])[0].sum(), xr)
    xe = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(reference.ssim(xe, y, w, C1, C2, PADS[padding])[0].sum(), xe)
    assert rel_err(got, want) < 1e-10


@pytest.mark.parametrize("used", [(0,), (1,), (2,), (0, 2), (1, 2)], ids=str)
def test_backward_when_only_some_outputs_are_used(used):
    """Unused outputs reach the backward as None (not zero tensors): each subset still gives the
    reference's gradient."""
    x, y = pair((2, 3, 30, 27))
    w = win(11)
    xr, xe = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = torch.ops.fastperc.ssim(xr, y, w, C1, C2, 1)
    want = reference.ssim(xe, y, w, C1, C2, 1)
    (gk,) = torch.autograd.grad(sum(got[i].sum() * (i + 1) for i in used), xr)
    (gr,) = torch.autograd.grad(sum(want[i].sum() * (i + 1) for i in used), xe)
    assert rel_err(gk, gr) < 1e-10
