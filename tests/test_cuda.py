"""CUDA kernels vs the reference. They run wherever a GPU is visible and are skipped only without one."""
import pytest
import torch

import fastperc
from fastperc import _backend, reference
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
