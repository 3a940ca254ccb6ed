"""The layout matrix: every op that takes several tensors, each input independently in every layout of
tests/layouts.py (contiguous, channels_last, permuted, sliced, expanded, transposed), values and
gradients against the reference on the same values. A kernel that reads one input with another's
strides, or past a view, fails here (sliced layouts surround the values with NaN)."""
import itertools
import random

import pytest
import torch

import fastperc
from fastperc import reference
from fastperc.functional.ssim import window_1d
from fastperc.reference.ssim import maps as reference_maps
from fastperc.sparse.functional import invert_map
from layouts import LAYOUTS, with_layout

ops = torch.ops.fastperc
C1, C2 = 0.01**2, 0.03**2
PAIRS = list(itertools.product(LAYOUTS, LAYOUTS))


def rand(shape, seed, dtype=torch.float64):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def sampled_combinations(n_inputs, count, seed):
    """Every layout for each input with the others contiguous, then `count` random combinations."""
    rng = random.Random(seed)
    combos = []
    for i, kind in itertools.product(range(n_inputs), LAYOUTS):
        combo = ["contiguous"] * n_inputs
        combo[i] = kind
        combos.append(tuple(combo))
    combos += [tuple(rng.choice(LAYOUTS) for _ in range(n_inputs)) for _ in range(count)]
    return combos


# ---- SSIM: x and y, 2D and 3D, every padding, forward outputs, the map and both gradients ----------

@pytest.mark.parametrize("shape", [(2, 3, 19, 23), (2, 2, 12, 13, 14)], ids=["2d", "3d"])
@pytest.mark.parametrize("lx,ly", PAIRS)
def test_ssim_x_and_y_layouts_float64(shape, lx, ly):
    x = with_layout(rand(shape, 0), lx)
    y = with_layout(rand(shape, 1), ly)
    xc, yc = x.contiguous().requires_grad_(), y.contiguous().requires_grad_()
    x.requires_grad_()
    y.requires_grad_()
    k = 5 if len(shape) == 5 else 7
    w = window_1d(k, 1.5, "gaussian", torch.float64, "cpu")
    weights = [rand(shape[:2], 10 + i) - 0.5 for i in range(3)]
    for padding in (0, 1, 2):
        got = ops.ssim(x, y, w, C1, C2, padding)
        exp = reference.ssim(xc, yc, w, C1, C2, padding)
        for a, b in zip(got, exp):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        g = torch.autograd.grad(sum((o * v).sum() for o, v in zip(got, weights)), (x, y))
        e = torch.autograd.grad(sum((o * v).sum() for o, v in zip(exp, weights)), (xc, yc))
        for a, b in zip(g, e):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        m = ops.ssim_map(x, y, w, C1, C2, padding)
        torch.testing.assert_close(m, reference.ssim_map(xc, yc, w, C1, C2, padding), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_ssim_layouts_give_the_contiguous_result_bit_for_bit(dtype):
    # Packing converts every layout into the same tile buffers: the result may not depend on strides.
    shape = (2, 3, 21, 18)
    w = window_1d(11, 1.5, "gaussian", torch.float32, "cpu")
    for lx, ly in PAIRS:
        x = with_layout(rand(shape, 2, dtype), lx)
        y = with_layout(rand(shape, 3, dtype), ly)
        for padding in (0, 1, 2):
            got = ops.ssim(x, y, w, C1, C2, padding)
            exp = ops.ssim(x.contiguous(), y.contiguous(), w, C1, C2, padding)
            assert all(torch.equal(a, b) for a, b in zip(got, exp)), (lx, ly, padding)
            gm = torch.ones(ops.ssim_map(x, y, w, C1, C2, padding).shape)
            got = ops.ssim_backward(gm, gm, torch.ones(shape), x, y, w, C1, C2, padding)
            exp = ops.ssim_backward(gm, gm, torch.ones(shape), x.contiguous(), y.contiguous(), w, C1, C2, padding)
            assert all(torch.equal(a, b) for a, b in zip(got, exp)), (lx, ly, padding)


@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("shape", [(2, 3, 17, 20), (2, 2, 9, 10, 11)], ids=["2d", "3d"])
def test_ssim_backward_every_input_layout(shape, padding):
    # grad_ssim, grad_cs (map-shaped), grad_l1 (input-shaped), x and y, each in its own layout.
    k = 5
    w = window_1d(k, 1.5, "gaussian", torch.float64, "cpu")
    x0, y0 = rand(shape, 4), rand(shape, 5)
    map_shape = ops.ssim_map(x0, y0, w, C1, C2, padding).shape
    gs0, gc0, gl0 = rand(map_shape, 6) - 0.5, rand(map_shape, 7) - 0.5, rand(shape, 8) - 0.5
    for combo in sampled_combinations(5, 20, seed=padding + len(shape)):
        gs, gc, gl, x, y = (with_layout(t, kind) for t, kind in zip((gs0, gc0, gl0, x0, y0), combo))
        got = ops.ssim_backward(gs, gc, gl, x, y, w, C1, C2, padding)
        xr, yr = x.contiguous().requires_grad_(), y.contiguous().requires_grad_()
        s_map, cs_map = reference_maps(xr, yr, w, C1, C2, padding)
        loss = (s_map * gs).sum() + (cs_map * gc).sum() + ((xr - yr).abs() * gl).sum()
        exp = torch.autograd.grad(loss, (xr, yr))
        for a, b in zip(got, exp):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=lambda m: f"{combo}: {m}")


@pytest.mark.parametrize("lx,ly", PAIRS)
def test_public_losses_follow_each_input_layout(lx, ly):
    # The 3DGS case of issue 11: a render beside an HWC image permuted to CHW, and every other pairing,
    # through ssim, ms_ssim, l1_ssim_loss and the loss modules, values and gradients.
    shape = (2, 3, 48, 40)
    x = with_layout(rand(shape, 9, torch.float32), lx).requires_grad_()
    y = with_layout(rand(shape, 10, torch.float32), ly)
    xc, yc = x.detach().contiguous().requires_grad_(), y.contiguous()
    for fn in (lambda a, b: fastperc.l1_ssim_loss(a, b),
               lambda a, b: fastperc.ssim(a, b, 1.0, preset="kornia"),
               lambda a, b: fastperc.ms_ssim(a, b, 1.0, win_size=3, weights=(0.5, 0.3, 0.2)),
               lambda a, b: fastperc.SSIMLoss(1.0)(a, b)):
        got, exp = fn(x, y), fn(xc, yc)
        torch.testing.assert_close(got, exp, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(torch.autograd.grad(got, x)[0], torch.autograd.grad(exp, xc)[0], rtol=1e-5,
                                   atol=1e-9)


# ---- Gram and style loss: features and target / upstream gradient ------------------------------------

@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (3, 9, 40)], ids=["bchw", "bcn"])
@pytest.mark.parametrize("lx,lt", PAIRS)
def test_style_loss_features_and_target_layouts(shape, lx, lt):
    x = with_layout(rand(shape, 11) - 0.5, lx).requires_grad_()
    channels = shape[1]
    target = with_layout(rand((shape[0], channels, channels), 12), lt).requires_grad_()
    xc = x.detach().contiguous().requires_grad_()
    tc = target.detach().contiguous().requires_grad_()
    got = fastperc.style_loss(x, target, normalize="chw")
    flat = xc.reshape(shape[0], channels, -1)
    exp = reference.style_loss(flat, tc, 1.0 / flat[0].numel(), 1.0 / tc.numel())[0]
    torch.testing.assert_close(got, exp, rtol=1e-12, atol=0)
    g = torch.autograd.grad(got, (x, target))
    e = torch.autograd.grad(exp, (xc, tc))
    for a, b in zip(g, e):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("lg,lx", PAIRS)
def test_gram_backward_grad_and_features_layouts(lg, lx):
    x = with_layout(rand((2, 7, 33), 13) - 0.5, lx)
    grad = with_layout(rand((2, 7, 7), 14) - 0.5, lg)
    got = ops.gram_backward(grad, x, 0.25)
    torch.testing.assert_close(got, reference.gram_backward(grad.contiguous(), x.contiguous(), 0.25),
                               rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ops.gram(x, 0.5), reference.gram(x.contiguous(), 0.5), rtol=1e-12, atol=1e-14)


# ---- Sparse convolution: features, weights, maps, upstream gradient, coordinates ---------------------

def sparse_case(n=120, cin=5, cout=6, seed=15):
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    keep = torch.randperm(len(grid), generator=g)[:n].sort().values
    coords = torch.cat([torch.zeros(n, 1, dtype=torch.int64), grid[keep]], 1).to(torch.int32)
    kmap = reference.sparse.kernel_map(coords, coords, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    feats = torch.randn(n, cin, generator=g, dtype=torch.float64)
    weight = torch.randn(27, cin, cout, generator=g, dtype=torch.float64)
    grad_out = torch.randn(n, cout, generator=g, dtype=torch.float64)
    return coords, kmap, feats, weight, grad_out


def test_sparse_conv_forward_and_backward_every_input_layout():
    coords, kmap0, feats0, weight0, grad0 = sparse_case()
    for combo in sampled_combinations(5, 30, seed=16):
        lf, lw, lm, li, lg = combo
        feats, weight, grad_out = with_layout(feats0, lf), with_layout(weight0, lw), with_layout(grad0, lg)
        # An expanded map repeats offset 0's row for every offset: still a valid map, with its own inverse.
        kmap = with_layout(kmap0, lm)
        inv = with_layout(invert_map(kmap.contiguous(), len(feats0)), li)
        if li == "expanded":
            inv = None  # an expanded inverse is not the inverse of the map (tested in test_raw_ops)
        got = ops.sparse_conv(feats, weight, kmap, inv)
        exp = reference.sparse.conv(feats.contiguous(), weight.contiguous(), kmap.contiguous())
        torch.testing.assert_close(got, exp, rtol=1e-12, atol=1e-12, msg=lambda m: f"{combo}: {m}")
        gf, gw = ops.sparse_conv_backward(grad_out, feats, weight, kmap, inv)
        fr = feats.contiguous().requires_grad_()
        wr = weight.contiguous().requires_grad_()
        ef, ew = torch.autograd.grad(reference.sparse.conv(fr, wr, kmap.contiguous()), (fr, wr), grad_out.contiguous())
        torch.testing.assert_close(gf, ef, rtol=1e-12, atol=1e-12, msg=lambda m: f"{combo}: {m}")
        torch.testing.assert_close(gw, ew, rtol=1e-12, atol=1e-12, msg=lambda m: f"{combo}: {m}")


@pytest.mark.parametrize("li,lo", PAIRS)
def test_kernel_map_coordinate_layouts(li, lo):
    coords = sparse_case(n=60, seed=17)[0]
    out = sparse_case(n=50, seed=18)[0]
    in_c, out_c = with_layout(coords, li), with_layout(out, lo)
    args = ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    if li == "expanded":  # every row the same site: duplicates, which the op must refuse
        with pytest.raises(RuntimeError, match="duplicate site"):
            ops.sparse_kernel_map(in_c, out_c, *map(list, args), False)
        return
    got = ops.sparse_kernel_map(in_c, out_c, *map(list, args), False)
    assert torch.equal(got, reference.sparse.kernel_map(in_c.contiguous(), out_c.contiguous(), *args))
    got = ops.sparse_out_coords(in_c, [3, 3, 3], [2, 2, 2], [1, 1, 1], [1, 1, 1], [6, 6, 6], False)
    exp = reference.sparse.out_coords(in_c.contiguous(), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), (6, 6, 6))
    assert torch.equal(got, exp)


# ---- The CUDA SSIM kernels under the CPU emulator (tests/cuda_emu): the same matrix ------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fused", "separable"])
def test_emulated_cuda_ssim_layout_matrix(dtype):
    # float32 2D inputs take the fused shared-memory kernels, float64 the separable passes; each input
    # (x, y and the three upstream gradients) is read with its own strides by both.
    from cuda_emu import load_emulated_ops

    emu = load_emulated_ops()
    shape = (2, 1, 13, 17)
    w = window_1d(5, 1.5, "gaussian", dtype, "cpu")
    x0, y0 = rand(shape, 20, dtype), rand(shape, 21, dtype)
    grads = [rand(shape, 22 + i, dtype) - 0.5 for i in range(3)]  # "zero" padding: map-shaped = input-shaped
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    # Every layout of x beside a contiguous y, of y beside a contiguous x, and of both at once (the
    # emulator runs each CUDA thread as a fiber: the full 36 pairs cost minutes under the sanitizers).
    pairs = [(kind, "contiguous") for kind in LAYOUTS] + [("contiguous", kind) for kind in LAYOUTS[1:]]
    pairs += [(kind, LAYOUTS[(i + 2) % len(LAYOUTS)]) for i, kind in enumerate(LAYOUTS)]
    for n, (lx, ly) in enumerate(pairs):
        x, y = with_layout(x0, lx), with_layout(y0, ly)
        xc, yc = x.contiguous(), y.contiguous()
        for got, exp in zip(emu.ssim(x, y, w, C1, C2, 1), ops.ssim(xc, yc, w, C1, C2, 1)):
            torch.testing.assert_close(got, exp, rtol=tol, atol=tol, msg=lambda m: f"{lx}, {ly}: {m}")
        torch.testing.assert_close(emu.ssim_map(x, y, w, C1, C2, 1), ops.ssim_map(xc, yc, w, C1, C2, 1), rtol=tol,
                                   atol=tol)
        gs, gc, gl = (with_layout(g, LAYOUTS[(n + i) % len(LAYOUTS)]) for i, g in enumerate(grads))
        got = emu.ssim_backward(gs, gc, gl, x, y, w, C1, C2, 1)
        exp = ops.ssim_backward(gs.contiguous(), gc.contiguous(), gl.contiguous(), xc, yc, w, C1, C2, 1)
        for a, b in zip(got, exp):
            torch.testing.assert_close(a, b, rtol=10 * tol, atol=10 * tol, msg=lambda m: f"{lx}, {ly}: {m}")
