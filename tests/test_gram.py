"""Gram kernel vs the pure-PyTorch reference: dtypes, shapes, layouts, structured inputs, ISAs, threads."""
import pytest
import torch

import fastperc
from fastperc import reference
from conftest import cpu_isa, num_threads, rel_err, supported_isas

# Relative to the largest entry of the float64 result. float16/bfloat16 inputs are compared with the
# Gram of the same rounded values: they accumulate in float32, so they meet the float32 tolerance.
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-5, torch.bfloat16: 1e-5}
SHAPES = [(1, 1, 7), (2, 3, 5), (1, 37, 300), (3, 64, 1000), (1, 130, 2049), (2, 257, 77), (1, 8, 20000)]


def truth(x, scale):
    xd = x.double()
    return torch.bmm(xd, xd.transpose(1, 2)) * scale


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(shape, dtype):
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    scale = 1.0 / (shape[1] * shape[2])
    out = torch.ops.fastperc.gram(x, scale)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert out.shape == (shape[0], shape[1], shape[1])
    assert rel_err(out, truth(x, scale)) < TOL[dtype]
    # The reference accumulates float32 in torch's own bmm order, whose error on long rows depends on the
    # platform's BLAS (1.7e-5 against float64 at N = 20000 on aarch64): allowed for on top of ours.
    ref = reference.gram(x, scale)
    assert rel_err(out, ref) < TOL[dtype] + rel_err(ref, truth(x, scale))
    assert torch.equal(out, out.transpose(1, 2)), "Gram must be exactly symmetric"


@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_every_isa_matches_reference(isa, dtype):
    # (1, 30, 16500): three column slabs; (1, 150, 70): C past 128, where avx512's Gram forward changes
    # tiles; (2, 64, 40): generic's 6-row tiles end past C and past the 8-wide panels (66 rows of 64).
    for shape in [(2, 45, 333), (1, 100, 129), (1, 5, 9), (1, 30, 16500), (1, 150, 70), (2, 64, 40)]:
        x = torch.randn(shape, dtype=torch.float64).to(dtype)
        with cpu_isa(isa):
            out = torch.ops.fastperc.gram(x, 0.5)
            grad = torch.ops.fastperc.gram_backward(out, x, 0.25) if dtype != torch.bfloat16 else None
        assert rel_err(out, truth(x, 0.5)) < TOL[dtype]
        if grad is not None:
            assert rel_err(grad, reference.gram_backward(out, x, 0.25)) < TOL[dtype]


@pytest.mark.parametrize("normalize,divisor", [("chw", lambda c, n: c * n), ("hw", lambda c, n: n), ("none", lambda c, n: 1)])
def test_gram_matrix_normalisations(normalize, divisor):
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    f = x.reshape(2, 6, 35)
    expected = torch.bmm(f, f.transpose(1, 2)) / divisor(6, 35)
    torch.testing.assert_close(fastperc.gram_matrix(x, normalize=normalize), expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(fastperc.gram_matrix(f, normalize=normalize), expected, rtol=1e-12, atol=1e-15)


def test_pytorch_tutorial_convention():
    # PyTorch's style-transfer tutorial: features = input.view(a * b, c * d); G = F F^T / (a * b * c * d).
    x = torch.randn(1, 8, 6, 4, dtype=torch.float64)
    feats = x.view(8, 24)
    tutorial = (feats @ feats.t()) / x.numel()
    torch.testing.assert_close(fastperc.gram_matrix(x)[0], tutorial, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "expanded"])
def test_non_contiguous_inputs(layout):
    base = torch.randn(2, 19, 11, 13, dtype=torch.float64)
    if layout == "channels_last":
        x = base.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = base.transpose(2, 3)
    elif layout == "sliced":
        x = torch.randn(2, 38, 11, 26, dtype=torch.float64)[:, ::2, :, ::2]
    else:
        x = torch.randn(1, 19, 11, 13, dtype=torch.float64).expand(3, -1, -1, -1)
    assert not x.is_contiguous()
    xc = x.contiguous()
    torch.testing.assert_close(fastperc.gram_matrix(x), fastperc.gram_matrix(xc), rtol=1e-13, atol=0)
    a = x.detach().requires_grad_(True)
    b = xc.detach().requires_grad_(True)
    w = torch.randn(x.shape[0], 19, 19, dtype=torch.float64)
    (fastperc.gram_matrix(a) * w).sum().backward()
    (fastperc.gram_matrix(b) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["zeros", "constant", "large", "tiny", "one_hot"])
def test_structured_inputs(kind):
    shape = (2, 33, 517)
    if kind == "zeros":
        x = torch.zeros(shape)
    elif kind == "constant":
        x = torch.full(shape, 3.0)
    elif kind == "large":
        x = torch.randn(shape) * 1e15
    elif kind == "tiny":
        x = torch.randn(shape) * 1e-15
    else:
        x = torch.zeros(shape)
        x[:, torch.arange(33), torch.arange(33) * 7] = 1.0
    out = fastperc.gram_matrix(x, normalize="none")
    exp = truth(x, 1.0)
    if kind == "zeros":
        assert torch.count_nonzero(out) == 0
    else:
        assert rel_err(out, exp) < 1e-5
    if kind == "constant":
        assert torch.equal(out, torch.full_like(out, 9.0 * 517))
    if kind == "one_hot":
        assert torch.equal(out, torch.eye(33).expand(2, 33, 33))


def test_half_precision_does_not_overflow():
    # |x| ~ 100 at 64x256x256: the unnormalised Gram reaches ~6.5e8, far beyond float16's 65504.
    torch.manual_seed(0)
    x = (torch.randn(1, 64, 256, 256) * 100).half()
    naive = torch.bmm(x.flatten(2), x.flatten(2).transpose(1, 2))
    assert torch.isinf(naive).any(), "the naive float16 Gram overflows"
    for normalize in ("none", "chw"):
        out = fastperc.gram_matrix(x, normalize=normalize)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        scale = 1.0 if normalize == "none" else 1.0 / (64 * 256 * 256)
        assert rel_err(out, truth(x.flatten(2), scale)) < 1e-5
    bf = x.bfloat16()
    assert rel_err(fastperc.gram_matrix(bf, normalize="none"), truth(bf.flatten(2), 1.0)) < 1e-5


@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_one_and_two_threads_give_identical_results(isa, dtype):
    x = torch.randn(3, 150, 20000).to(dtype)
    w = torch.randn(3, 150, 150).to(torch.float64 if dtype == torch.float64 else torch.float32)
    results = []
    for n in (1, 2):
        with num_threads(n), cpu_isa(isa):
            results.append((torch.ops.fastperc.gram(x, 1e-3), torch.ops.fastperc.gram_backward(w, x, 0.1),
                            torch.ops.fastperc.style_loss(x, w[:1], 1e-3, 0.5)))
    for a, b in zip(results[0], results[1]):
        for ta, tb in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert torch.equal(ta, tb)


# Where a tile's row of x is not whole cache lines (avx2, generic) the backward packs x in chunks of
# rows; avx512 reads x in place. Two chunks (C past avx2's 168 and generic's 512) on every ISA, with
# partial row tiles, ragged last columns and a sliced (row-strided) x.
@pytest.mark.parametrize("isa", supported_isas())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_gram_backward_every_isa_chunked_rows(isa, dtype):
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for shape in [(1, 203, 301), (2, 530, 77)]:
        x = torch.randn(shape[0], shape[1], shape[2] + 5, dtype=torch.float64)[:, :, 3:-2].to(dtype)
        g = torch.randn(shape[0], shape[1], shape[1], dtype=torch.float64).to(dtype)
        with cpu_isa(isa):
            out = torch.ops.fastperc.gram_backward(g, x, 0.3)
        assert rel_err(out, reference.gram_backward(g.double(), x.double(), 0.3)) < tol


def test_gram_backward_matches_reference():
    for dtype, tol in [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)]:
        for shape in [(2, 37, 301), (1, 64, 1000), (1, 1, 3)]:
            x = torch.randn(shape, dtype=torch.float64).to(dtype)
            g = torch.randn(shape[0], shape[1], shape[1], dtype=torch.float64 if dtype == torch.float64 else torch.float32)
            out = torch.ops.fastperc.gram_backward(g, x, 0.3)
            assert out.dtype == dtype and out.shape == x.shape
            # half-precision outputs are rounded once to their dtype: tolerance is their epsilon
            assert rel_err(out, reference.gram_backward(g.double(), x.double(), 0.3)) < tol


def test_gram_autograd_matches_reference():
    x = torch.randn(2, 21, 5, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 21, 21, dtype=torch.float64)
    (fastperc.gram_matrix(x, normalize="hw") * w).sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    f = xr.flatten(2)
    ((torch.bmm(f, f.transpose(1, 2)) / 45) * w).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-14)
