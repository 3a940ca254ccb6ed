"""The CUDA Gram and SSIM kernels against the CPU kernels and torch, each test twice: under the CPU
emulator of tests/cuda_emu (the same kernel and driver source nvcc compiles; block threads as fibers,
barriers honoured), which runs everywhere, and on the GPU, skipped only without one. CPU tensors go
in; the GPU runs get copies. The sparse kernels' runs are in tests/test_cuda_sparse.py; GPU-only
behaviour (streams, compile, grid limits) in tests/test_cuda.py."""
import pytest
import torch

from fastperc.functional.ssim import window_1d
from conftest import rel_err
from cuda_emu import load_emulated_ops

cpu = torch.ops.fastperc
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-5, torch.bfloat16: 1e-5}


class OnGpu:
    """The emulated ops' calls, run by the real CUDA ops on copies (results come back to the CPU)."""

    @staticmethod
    def _run(op, *args):
        out = op(*[a.cuda() if isinstance(a, torch.Tensor) else a for a in args])
        return tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu()

    def gram(self, x, scale, sms):  # the GPU picks its own split count
        return self._run(cpu.gram, x, scale)

    def ssim(self, *args):
        return self._run(cpu.ssim, *args)

    def ssim_map(self, *args):
        return self._run(cpu.ssim_map, *args)

    def ssim_backward(self, *args):
        return self._run(cpu.ssim_backward, *args)


@pytest.fixture(scope="module", params=["emulated", "cuda"])
def emu(request):
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        return OnGpu()
    return load_emulated_ops()


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("shape,sms", [((1, 1, 7), 1), ((5, 3, 5), 1), ((1, 37, 300), 1), ((3, 70, 1000), 8),
                                       ((1, 130, 2100), 8)])
def test_gram_matches_bmm(emu, shape, sms, dtype):
    # C off the 64-wide tiles (several tiles per side), N off the 16-deep slices, several N splits;
    # batches of 3 and 5 cross the emulator's grid chunk of 2 (65535 on a GPU).
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    out = emu.gram(x, 0.5, sms)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    xd = x.double()
    assert rel_err(out, torch.bmm(xd, xd.transpose(1, 2)) * 0.5) < TOL[dtype]
    assert torch.equal(out, out.transpose(1, 2))


def test_gram_strided_inputs_and_split_count(emu):
    base = torch.randn(2, 70, 600, dtype=torch.float64)
    channels_fast = base.transpose(1, 2).contiguous().transpose(1, 2)  # neighbouring channels adjacent
    expected = torch.bmm(base, base.transpose(1, 2))
    for x in (channels_fast, base[:, :, ::2]):
        ref = torch.bmm(x, x.transpose(1, 2))
        torch.testing.assert_close(emu.gram(x, 1.0, 4), ref, rtol=1e-12, atol=1e-12)
    # the splits change the summation order only (the GPU picks its own)
    torch.testing.assert_close(emu.gram(base, 1.0, 1), emu.gram(base, 1.0, 64), rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(emu.gram(base, 1.0, 1), expected, rtol=1e-12, atol=1e-12)


def ssim_inputs(shape, dtype, win, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    return x.to(dtype), y.to(dtype), window_1d(win, 1.5, "gaussian", acc, "cpu")


# 2D float32/16 inputs take the fused shared-memory kernel (windows up to 23; 16 x 32 map tiles, so
# 37 x 70 spans 3 x 3 tiles with ragged edges); float64, 3D and wider windows the separable passes.
SSIM_CASES = [((2, 3, 23, 19), 11, 0), ((2, 3, 23, 19), 11, 1), ((1, 2, 16, 21), 7, 2), ((1, 1, 11, 11), 11, 0),
              ((1, 2, 37, 70), 23, 1), ((1, 2, 37, 70), 23, 0), ((1, 2, 37, 70), 11, 2), ((1, 1, 30, 33), 25, 2),
              ((1, 2, 9, 10, 11), 5, 0), ((1, 2, 9, 10, 11), 5, 2)]
SSIM_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-5, torch.bfloat16: 1e-5}


@pytest.mark.parametrize("dtype", list(SSIM_TOL))
@pytest.mark.parametrize("shape,win,padding", SSIM_CASES)
def test_ssim_forward_and_map_match_cpu_kernels(emu, shape, win, padding, dtype):
    # Against the CPU kernels (held to the reference by tests/test_ssim.py) on the same inputs, 2D
    # and 3D, valid / zero / reflect padding; half inputs accumulate in float32 on both.
    x, y, w = ssim_inputs(shape, dtype, win)
    got, exp = emu.ssim(x, y, w, 1e-4, 9e-4, padding), cpu.ssim(x, y, w, 1e-4, 9e-4, padding)
    for a, b in zip(got, exp):
        assert a.dtype == b.dtype and rel_err(a, b) < SSIM_TOL[dtype]
    got_map, exp_map = emu.ssim_map(x, y, w, 1e-4, 9e-4, padding), cpu.ssim_map(x, y, w, 1e-4, 9e-4, padding)
    assert got_map.shape == exp_map.shape and rel_err(got_map, exp_map) < 10 * SSIM_TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,win,padding", SSIM_CASES)
def test_ssim_map_exactly_one_and_symmetric(emu, shape, win, padding, dtype):
    # The moment kernels round x * y and x^2 + y^2's products alike (ssim_mul, where nvcc would
    # contract them into FMAs one way or the other): SSIM(x, x) is exactly 1 and SSIM(x, y) is
    # SSIM(y, x) to the bit, as on the CPU.
    x, y, w = ssim_inputs(shape, dtype, win)
    assert emu.ssim_map(x, x, w, 1e-4, 9e-4, padding).eq(1.0).all()
    assert torch.equal(emu.ssim_map(x, y, w, 1e-4, 9e-4, padding), emu.ssim_map(y, x, w, 1e-4, 9e-4, padding))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,win,padding", SSIM_CASES)
def test_ssim_backward_matches_cpu_kernel(emu, shape, win, padding, dtype):
    x, y, w = ssim_inputs(shape, dtype, win, seed=1)
    map_shape = cpu.ssim_map(x, y, w, 1e-4, 9e-4, padding).shape
    acc = w.dtype
    g = torch.Generator().manual_seed(2)
    grads = (torch.randn(map_shape, generator=g, dtype=acc), torch.randn(map_shape, generator=g, dtype=acc),
             torch.randn(x.shape, generator=g, dtype=acc))
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 1e-2}[dtype]
    for gs, gc, gl, mask in [(grads[0], None, None, [True, True]), (grads[0], grads[1], grads[2], [True, True]),
                             (grads[0], None, grads[2], [False, True]), (grads[0], grads[1], None, [True, False])]:
        got = emu.ssim_backward(gs, gc, gl, x, y, w, 1e-4, 9e-4, padding, mask)
        exp = cpu.ssim_backward(gs, gc, gl, x, y, w, 1e-4, 9e-4, padding, mask)
        for a, b, wanted in zip(got, exp, mask):
            assert a.shape == b.shape and (a.numel() == 0) == (not wanted)
            if wanted:
                assert rel_err(a, b) < tol


def test_ssim_channels_last_and_expanded_inputs(emu):
    x, y, w = ssim_inputs((2, 3, 17, 18), torch.float64, 7)
    # x and y in different layouts (each is read with its own strides)
    channels_last = torch.channels_last
    for xs, ys in [(x.contiguous(memory_format=channels_last), y), (x, y.contiguous(memory_format=channels_last)),
                   (x[:1].expand(2, -1, -1, -1), y)]:
        for a, b in zip(emu.ssim(xs, ys, w, 1e-4, 9e-4, 1), cpu.ssim(xs.contiguous(), ys.contiguous(), w, 1e-4, 9e-4, 1)):
            assert rel_err(a, b) < 1e-12
        gs = torch.randn(2, 3, 17, 18, dtype=torch.float64)
        for a, b in zip(emu.ssim_backward(gs, None, None, xs, ys, w, 1e-4, 9e-4, 1),
                        cpu.ssim_backward(gs, None, None, xs.contiguous(), ys.contiguous(), w, 1e-4, 9e-4, 1)):
            assert rel_err(a, b) < 1e-10
