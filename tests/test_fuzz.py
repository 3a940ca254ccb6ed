"""Property-based fuzzing (hypothesis) of the kernels against the reference: shapes, windows, paddings,
dtypes, thread counts and each input's memory layout drawn independently. derandomize=True makes the
examples the same on every run, so a CI failure reproduces locally."""
import torch
from hypothesis import given, settings, strategies as st  # the test extra; CI installs it

from fastperc import reference
from fastperc.functional.ssim import window_1d
from fastperc.reference.ssim import maps as reference_maps
from fastperc.sparse.functional import invert_map
from conftest import num_threads
from layouts import LAYOUTS, with_layout

ops = torch.ops.fastperc
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)
layout = st.sampled_from(LAYOUTS)
# Tolerances relative to the reference in float64 per input dtype (float32 accumulation below float64).
TOL = {torch.float64: 1e-9, torch.float32: 2e-4}


def values(shape, seed, dtype):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


@st.composite
def ssim_problems(draw):
    volumetric = draw(st.booleans())
    k = draw(st.sampled_from([1, 3, 5, 7] if volumetric else [1, 3, 5, 7, 11]))
    padding = draw(st.integers(0, 2))
    least = k if padding == 0 else (k - 1) // 2 + 1
    spatial = [draw(st.integers(least, least + (6 if volumetric else 30))) for _ in range(3 if volumetric else 2)]
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), *spatial)
    return dict(shape=shape, k=k, padding=padding, dtype=draw(st.sampled_from([torch.float64, torch.float32])),
                layouts=[draw(layout) for _ in range(5)], threads=draw(st.sampled_from([1, 2])),
                seed=draw(st.integers(0, 2**16)))


@FUZZ
@given(ssim_problems())
def test_ssim_forward_and_backward_fuzz(p):
    shape, dtype, padding = p["shape"], p["dtype"], p["padding"]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    w = window_1d(p["k"], 1.5, "gaussian", acc, "cpu")
    x0, y0 = values(shape, p["seed"], dtype), values(shape, p["seed"] + 1, dtype)
    x, y = with_layout(x0, p["layouts"][0]), with_layout(y0, p["layouts"][1])
    xr, yr = x.to(torch.float64).contiguous().requires_grad_(), y.to(torch.float64).contiguous().requires_grad_()
    wr = w.double()
    s_map, cs_map = reference_maps(xr, yr, wr, 1e-4, 9e-4, padding)
    gs, gc = (with_layout(values(s_map.shape, p["seed"] + i, acc) - 0.5, p["layouts"][i]) for i in (2, 3))
    gl = with_layout(values(shape, p["seed"] + 4, acc) - 0.5, p["layouts"][4])
    with num_threads(p["threads"]):
        means = ops.ssim(x, y, w, 1e-4, 9e-4, padding)
        smap = ops.ssim_map(x, y, w, 1e-4, 9e-4, padding)
        gx, gy = ops.ssim_backward(gs, gc, gl, x, y, w, 1e-4, 9e-4, padding)
    tol = TOL[dtype]
    exp = reference.ssim(xr, yr, wr, 1e-4, 9e-4, padding)
    for a, b in zip(means, exp):
        torch.testing.assert_close(a.double(), b.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(smap.double(), s_map.detach(), rtol=tol, atol=tol)
    loss = (s_map * gs.double()).sum() + (cs_map * gc.double()).sum() + ((xr - yr).abs() * gl.double()).sum()
    ex, ey = torch.autograd.grad(loss, (xr, yr))
    scale = max(ex.abs().max().item(), ey.abs().max().item(), 1.0)
    torch.testing.assert_close(gx.double(), ex, rtol=tol, atol=tol * scale)
    torch.testing.assert_close(gy.double(), ey, rtol=tol, atol=tol * scale)


@FUZZ
@given(batch=st.integers(1, 3), channels=st.integers(1, 40), positions=st.integers(1, 300),
       target_batch_one=st.booleans(), lx=layout, lt=layout, threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_style_loss_fuzz(batch, channels, positions, target_batch_one, lx, lt, threads, seed):
    x = with_layout(values((batch, channels, positions), seed, torch.float64) - 0.5, lx)
    target = with_layout(values((1 if target_batch_one else batch, channels, channels), seed + 1, torch.float64), lt)
    with num_threads(threads):
        loss, residual = ops.style_loss(x, target, 0.5, 0.25)
        grad = ops.gram_backward(residual, x, 0.5)
    exp_loss, exp_res = reference.style_loss(x.contiguous(), target.contiguous(), 0.5, 0.25)
    torch.testing.assert_close(loss, exp_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(residual, exp_res, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, reference.gram_backward(exp_res, x.contiguous(), 0.5), rtol=1e-10, atol=1e-12)


@FUZZ
@given(n=st.integers(1, 150), cin=st.integers(1, 40), cout=st.integers(1, 70), kernel=st.sampled_from([1, 3]),
       layouts=st.lists(layout, min_size=4, max_size=4), give_inverse=st.booleans(), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_sparse_conv_fuzz(n, cin, cout, kernel, layouts, give_inverse, threads, seed):
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    keep = torch.randperm(len(grid), generator=g)[:n]  # unsorted sites: the hash path of the map
    coords = torch.cat([torch.zeros(len(keep), 1, dtype=torch.int64), grid[keep]], 1).to(torch.int32)
    n = len(coords)
    ks, pad = [kernel] * 3, [kernel // 2] * 3
    kmap = ops.sparse_kernel_map(coords, coords, ks, [1] * 3, pad, [1] * 3, False)
    assert torch.equal(kmap, reference.sparse.kernel_map(coords, coords, ks, [1] * 3, pad, [1] * 3))
    feats = with_layout(torch.randn(n, cin, generator=g, dtype=torch.float64), layouts[0])
    weight = with_layout(torch.randn(kernel**3, cin, cout, generator=g, dtype=torch.float64), layouts[1])
    grad_out = with_layout(torch.randn(n, cout, generator=g, dtype=torch.float64), layouts[2])
    kmap_view = with_layout(kmap, layouts[3]) if layouts[3] != "expanded" else kmap
    inv = invert_map(kmap, n) if give_inverse else None
    with num_threads(threads):
        out = ops.sparse_conv(feats, weight, kmap_view, inv)
        gf, gw = ops.sparse_conv_backward(grad_out, feats, weight, kmap_view, inv)
    fr, wr = feats.contiguous().requires_grad_(), weight.contiguous().requires_grad_()
    exp = reference.sparse.conv(fr, wr, kmap)
    torch.testing.assert_close(out, exp.detach(), rtol=1e-12, atol=1e-12)
    ef, ew = torch.autograd.grad(exp, (fr, wr), grad_out.contiguous())
    torch.testing.assert_close(gf, ef, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw, ew, rtol=1e-12, atol=1e-12)
