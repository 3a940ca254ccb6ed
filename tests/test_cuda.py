"""CUDA kernels vs the reference. They run wherever a GPU is visible and are skipped only without one."""
import pytest
import torch

import fastperc
from fastperc import _backend, reference
from fastperc.functional.ssim import window_1d
from conftest import rel_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-5, torch.bfloat16: 1e-5}


def test_cuda_kernels_are_used():
    for op in _backend.OPS:
        assert _backend.KERNELS[(op, "cuda")] == (op not in _backend.CPU_ONLY_OPS), op


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("shape", [(1, 1, 7), (2, 3, 5), (1, 37, 300), (3, 64, 1000), (1, 130, 20000), (2, 257, 77), (8, 512, 1024)])
def test_gram_forward(shape, dtype):
    x = torch.randn(shape, dtype=torch.float64, device="cuda").to(dtype)
    out = torch.ops.fastperc.gram(x, 0.5)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    xd = x.double()
    assert rel_err(out, torch.bmm(xd, xd.transpose(1, 2)) * 0.5) < TOL[dtype]
    assert torch.equal(out, out.transpose(1, 2))


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "expanded"])
def test_gram_strided_inputs(layout):
    base = torch.randn(2, 70, 33, 35, dtype=torch.float64, device="cuda")
    x = {"channels_last": base.contiguous(memory_format=torch.channels_last), "transposed": base.transpose(2, 3),
         "expanded": base[:1].expand(3, -1, -1, -1)}[layout]
    torch.testing.assert_close(fastperc.gram_matrix(x), fastperc.gram_matrix(x.contiguous()), rtol=1e-12, atol=1e-15)


def test_batch_beyond_grid_limit():
    x = torch.randn(70000, 3, 5, device="cuda")
    torch.testing.assert_close(torch.ops.fastperc.gram(x, 1.0), reference.gram(x, 1.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_style_loss_forward_backward(dtype):
    x = torch.randn(2, 48, 20, 21, dtype=torch.float64, device="cuda")
    a = fastperc.gram_matrix(torch.randn(1, 48, 20, 21, dtype=torch.float64, device="cuda"))
    xa = x.to(dtype).requires_grad_(True)
    aa = a.to(torch.float64 if dtype == torch.float64 else torch.float32)
    loss = fastperc.style_loss(xa, aa) * 2.0**20
    loss.backward()
    xr = xa.detach().double().cpu().requires_grad_(True)
    ref = fastperc.style_loss(xr, aa.double().cpu()) * 2.0**20
    ref.backward()
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert rel_err(loss.cpu(), ref) < max(tol, 1e-5)
    assert rel_err(xa.grad.cpu(), xr.grad) < tol


def test_gradcheck_and_opcheck_on_cuda():
    x = torch.randn(2, 5, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    a = torch.randn(1, 5, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: torch.ops.fastperc.gram(t, 0.3), (x,))
    assert torch.autograd.gradcheck(lambda t, g: fastperc.style_loss(t, g), (x, a))
    torch.library.opcheck(torch.ops.fastperc.gram.default, (x, 0.3))
    torch.library.opcheck(torch.ops.fastperc.gram_backward.default, (torch.randn(2, 5, 5, dtype=torch.float64, device="cuda"), x, 0.3))
    torch.library.opcheck(torch.ops.fastperc.style_loss.default, (x, a, 0.1, 0.2))


def test_deterministic_and_on_current_stream():
    x = torch.randn(4, 200, 5000, device="cuda")
    first = torch.ops.fastperc.gram(x, 1.0)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        second = torch.ops.fastperc.gram(x, 1.0)
    stream.synchronize()
    assert torch.equal(first, second)


def test_compile_on_cuda():
    a = fastperc.gram_matrix(torch.randn(1, 16, 8, 8, device="cuda"))
    fn = torch.compile(lambda t: fastperc.style_loss(t, a), fullgraph=True)
    x = torch.randn(2, 16, 8, 8, device="cuda", requires_grad=True)
    fn(x).backward()
    x2 = x.detach().clone().requires_grad_(True)
    fastperc.style_loss(x2, a).backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-10)


def _ssim_pair(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    y = (x + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return x.to(dtype), y.to(dtype)


@pytest.mark.parametrize("padding", ["valid", "zero", "reflect"])
def test_ssim_api_forward_backward_on_cuda(padding):
    # The public API on a 1080p frame (the 3DGS case): values and both gradients against the CPU.
    x, y = _ssim_pair((1, 3, 1080, 1920))
    results = []
    for device in ("cpu", "cuda"):
        xa, ya = x.to(device).requires_grad_(True), y.to(device).requires_grad_(True)
        value = fastperc.ssim(xa, ya, data_range=1.0, padding=padding)
        value.backward()
        results.append((value.cpu(), xa.grad.cpu(), ya.grad.cpu()))
    for a, b in zip(results[0], results[1]):
        assert rel_err(b, a) < 1e-4


def test_ssim_planes_beyond_grid_limit_and_ms_ssim():
    x, y = _ssim_pair((70000, 1, 16, 16))
    w = window_1d(11, 1.5, "gaussian", torch.float32, "cpu")
    got = torch.ops.fastperc.ssim(x.cuda(), y.cuda(), w.cuda(), 1e-4, 9e-4, 1)[0].cpu()
    torch.testing.assert_close(got, torch.ops.fastperc.ssim(x, y, w, 1e-4, 9e-4, 1)[0], rtol=1e-5, atol=1e-6)
    x, y = _ssim_pair((2, 3, 256, 256))
    torch.testing.assert_close(fastperc.ms_ssim(x.cuda(), y.cuda(), data_range=1.0).cpu(),
                               fastperc.ms_ssim(x, y, data_range=1.0), rtol=1e-5, atol=1e-6)


def test_ssim_gradcheck_opcheck_and_compile_on_cuda():
    x, y = (t.double().cuda() for t in _ssim_pair((1, 2, 13, 14)))
    xr = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: fastperc.ssim(a, y, data_range=1.0, win_size=5, padding="zero"), (xr,))
    w = window_1d(5, 1.5, "gaussian", torch.float64, "cuda")
    torch.library.opcheck(torch.ops.fastperc.ssim.default, (xr, y, w, 1e-4, 9e-4, 1))
    torch.library.opcheck(torch.ops.fastperc.ssim_map.default, (xr, y, w, 1e-4, 9e-4, 0))
    xf, yf = (t.float().requires_grad_(True) for t in (x, y))
    fn = torch.compile(lambda a, b: fastperc.ssim(a, b, data_range=1.0, padding="zero"), fullgraph=True)
    torch.testing.assert_close(fn(xf, yf), fastperc.ssim(xf, yf, data_range=1.0, padding="zero"), rtol=1e-6, atol=1e-6)
