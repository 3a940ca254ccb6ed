"""CUDA sparse convolution kernels vs the CPU kernels and the reference: kernel maps, output sites,
forward and both gradients in every dtype, determinism, bad input.

Each parity test runs twice: on the GPU (skipped only without one) and under the CPU emulator of
tests/cuda_emu, which runs the same kernel and driver source on CPU tensors with one thread per CUDA
thread. Tests of GPU behaviour proper (streams, compile, the layers) run on the GPU only."""
import pytest
import torch

from fastperc import reference
from fastperc.sparse import SparseTensor, functional as SF, nn as snn
from conftest import rel_err

ops = torch.ops.fastperc
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


# `backend` (conftest.py): (ops, device) of the GPU or of the CPU emulator.
# (kernel, stride, padding, dilation, transposed)
MAP_CASES = [
    ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), False),  # submanifold
    ((5, 5, 5), (1, 1, 1), (2, 2, 2), (1, 1, 1), False),  # K = 125
    ((3, 3, 3), (1, 1, 1), (2, 2, 2), (2, 2, 2), False),  # dilated
    ((2, 3, 2), (2, 1, 2), (0, 1, 0), (1, 1, 1), False),  # strided, even and odd taps
    ((3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), True),  # transposed
    ((2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), True),
]


def random_sites(batch=2, shape=(12, 11, 10), density=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.nonzero(torch.rand((batch,) + shape, generator=g) < density).to(torch.int32)
    return coords[torch.randperm(len(coords), generator=g)], shape  # unsorted on purpose


@pytest.mark.parametrize("case", MAP_CASES)
def test_out_coords_and_kernel_map_match_cpu(backend, case):
    dev_ops, device = backend
    ks, st, pd, dl, tr = (list(v) if isinstance(v, tuple) else v for v in case)
    coords, shape = random_sites(shape=(7, 6, 5), density=0.3)
    if st == [1, 1, 1] and not tr:
        out_cpu = coords
    else:
        out_cpu = ops.sparse_out_coords(coords, ks, st, pd, dl, list(shape), tr)
        out_dev = dev_ops.sparse_out_coords(coords.to(device), ks, st, pd, dl, list(shape), tr)
        assert torch.equal(out_dev.cpu(), out_cpu)
    got = dev_ops.sparse_kernel_map(coords.to(device), out_cpu.to(device), ks, st, pd, dl, tr)
    assert torch.equal(got.cpu(), ops.sparse_kernel_map(coords, out_cpu, ks, st, pd, dl, tr))


def test_kernel_map_at_the_corner_of_the_key_space_and_errors(backend):
    dev_ops, device = backend
    top = (1 << 16) - 1
    c = torch.tensor([[32767, top, top, top], [32767, top, top, top - 1], [0, 0, 0, 0]], dtype=torch.int32)
    args = ([3] * 3, [1] * 3, [1] * 3, [1] * 3, False)
    got = dev_ops.sparse_kernel_map(c.to(device), c.to(device), *args)
    assert torch.equal(got.cpu(), reference.sparse.kernel_map(c, c, *args))
    dup = torch.tensor([[0, 1, 1, 1], [0, 2, 2, 2], [0, 1, 1, 1]], dtype=torch.int32, device=device)
    with pytest.raises(RuntimeError, match=r"duplicate site \(0, 1, 1, 1\) at rows 0 and 2"):
        dev_ops.sparse_kernel_map(dup, dup[:1], *args)
    with pytest.raises(RuntimeError, match=r"site 1 \(32768, 0, 0, 0\) is outside the key space"):
        dev_ops.sparse_kernel_map(torch.tensor([[0, 1, 1, 1], [32768, 0, 0, 0]], dtype=torch.int32, device=device),
                                  dup[:1], *args)
    with pytest.raises(RuntimeError, match="site 0 .* key space"):
        dev_ops.sparse_kernel_map(dup[:1], torch.tensor([[0, -1, 0, 0]], dtype=torch.int32, device=device), *args)
    with pytest.raises(RuntimeError, match=r"site 1 \(0, 2, 2, 2\) lies outside spatial_shape"):
        dev_ops.sparse_out_coords(dup[:2], [2] * 3, [2] * 3, [0] * 3, [1] * 3, [2, 2, 2], False)


@needs_gpu
def test_kernel_map_devices_must_match():
    c = torch.tensor([[0, 1, 1, 1]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="same CUDA device"):
        ops.sparse_kernel_map(c.cuda(), c, [3] * 3, [1] * 3, [1] * 3, [1] * 3, False)


def conv_case(n_batch, shape, density, cin, cout, dtype, seed=0):
    coords, shape = random_sites(n_batch, shape, density, seed)
    kmap = ops.sparse_kernel_map(coords, coords, [3] * 3, [1] * 3, [1] * 3, [1] * 3, False)
    g = torch.Generator().manual_seed(seed + 1)
    f = torch.randn(len(coords), cin, generator=g, dtype=torch.float64).to(dtype)
    w = (torch.randn(27, cin, cout, generator=g, dtype=torch.float64) / (27 * cin) ** 0.5).to(dtype)
    grad = torch.randn(len(coords), cout, generator=g, dtype=torch.float64).to(dtype)
    return f, w, kmap, grad


TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("sizes", [(3, 5), (64, 64), (70, 130), (1, 1)])
def test_conv_forward_and_gradients_match_reference(backend, dtype, sizes):
    # Channel counts off the 64-wide tiles and 16-deep slices. Reference in float64 on the same
    # (rounded) inputs.
    dev_ops, device = backend
    f, w, kmap, grad = conv_case(2, (9, 8, 7), 0.5, *sizes, dtype)
    out = dev_ops.sparse_conv(f.to(device), w.to(device), kmap.to(device))
    gf, gw = dev_ops.sparse_conv_backward(grad.to(device), f.to(device), w.to(device), kmap.to(device))
    assert out.dtype == gf.dtype == gw.dtype == dtype
    fd, wd = f.double().requires_grad_(True), w.double().requires_grad_(True)
    ref = reference.sparse.conv(fd, wd, kmap)
    ref_f, ref_w = torch.autograd.grad(ref, (fd, wd), grad.double())
    assert rel_err(out.cpu().double(), ref) < TOL[dtype]
    assert rel_err(gf.cpu().double(), ref_f) < TOL[dtype]
    assert rel_err(gw.cpu().double(), ref_w) < TOL[dtype]


def test_weight_gradient_over_several_splits(backend):
    # > 4096 outputs: the weight gradient sums several fixed splits of the pairs.
    dev_ops, device = backend
    f, w, kmap, grad = conv_case(1, (30, 30, 16), 0.6, 4, 6, torch.float64)
    assert kmap.shape[1] > 2 * 4096
    gf, gw = dev_ops.sparse_conv_backward(grad.to(device), f.to(device), w.to(device), kmap.to(device))
    fd, wd = f.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ref_f, ref_w = torch.autograd.grad(reference.sparse.conv(fd, wd, kmap), (fd, wd), grad)
    assert rel_err(gf.cpu(), ref_f) < 1e-12 and rel_err(gw.cpu(), ref_w) < 1e-12


def test_bad_maps_fail_before_any_row_is_read_and_empty_inputs(backend):
    dev_ops, device = backend
    f, w, kmap, grad = (t.to(device) for t in conv_case(1, (4, 4, 4), 0.4, 2, 3, torch.float64))
    with pytest.raises(RuntimeError, match="kernel map entries must be -1 or rows of feats .* got 99"):
        dev_ops.sparse_conv(f, w, torch.where(kmap == 0, 99, kmap))
    with pytest.raises(RuntimeError, match="got -2"):
        dev_ops.sparse_conv_backward(grad, f, w, torch.where(kmap == 0, -2, kmap))
    with pytest.raises(RuntimeError, match="float32 or float64, float16 or bfloat16"):
        dev_ops.sparse_conv(f.int(), w.int(), kmap)
    # inverse map given or rebuilt: the same gradients
    inv = SF.invert_map(kmap, len(f))
    a, b = dev_ops.sparse_conv_backward(grad, f, w, kmap, inv), dev_ops.sparse_conv_backward(grad, f, w, kmap)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # output_mask: a gradient not asked for is not computed and comes back empty
    for mask in ([True, False], [False, True], [False, False]):
        got = dev_ops.sparse_conv_backward(grad, f, w, kmap, None, mask)
        for want, full, part in zip(mask, a, got):
            assert torch.equal(part, full) if want else part.shape == (0,)
    # no sites at all, and outputs without inputs
    coords = random_sites(1, (4, 4, 4), 0.4)[0].to(device)
    empty = torch.zeros(0, 4, dtype=torch.int32, device=device)
    assert dev_ops.sparse_kernel_map(empty, empty, [3] * 3, [1] * 3, [1] * 3, [1] * 3, False).shape == (27, 0)
    assert dev_ops.sparse_out_coords(empty, [2] * 3, [2] * 3, [0] * 3, [1] * 3, [4] * 3, False).shape == (0, 4)
    lonely = dev_ops.sparse_kernel_map(empty, coords, [3] * 3, [1] * 3, [1] * 3, [1] * 3, False)
    assert torch.equal(dev_ops.sparse_conv(f[:0], w, lonely), torch.zeros(len(coords), 3, dtype=torch.float64, device=device))


@needs_gpu
def test_deterministic_and_on_current_stream():
    f, w, kmap, grad = (t.cuda() for t in conv_case(1, (40, 40, 10), 0.5, 32, 48, torch.float32))
    first = ops.sparse_conv_backward(grad, f, w, kmap)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        second = ops.sparse_conv_backward(grad, f, w, kmap)
        out_a, out_b = ops.sparse_conv(f, w, kmap), ops.sparse_conv(f, w, kmap)
    stream.synchronize()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(out_a, out_b)


@needs_gpu
def test_gradcheck_and_opcheck():
    f, w, kmap, grad = (t.cuda() for t in conv_case(1, (4, 4, 4), 0.4, 2, 3, torch.float64))
    fr, wr = f.clone().requires_grad_(True), w.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ops.sparse_conv(a, b, kmap), (fr, wr))
    torch.library.opcheck(ops.sparse_conv.default, (fr, wr, kmap))
    torch.library.opcheck(ops.sparse_conv_backward.default, (grad, f, w, kmap))
    torch.library.opcheck(ops.sparse_conv_backward.default, (grad, f, w, kmap, None, [False, True]))
    coords = random_sites(1, (4, 4, 4), 0.4)[0].cuda()
    torch.library.opcheck(ops.sparse_kernel_map.default, (coords, coords, [3] * 3, [1] * 3, [1] * 3, [1] * 3, False))
    torch.library.opcheck(ops.sparse_out_coords.default, (coords, [2] * 3, [2] * 3, [0] * 3, [1] * 3, [4] * 3, False))


@needs_gpu
def test_layers_on_cuda_match_cpu_and_compile():
    coords, shape = random_sites(2, (12, 12, 12), 0.3)
    feats = torch.randn(len(coords), 4)
    torch.manual_seed(0)
    net = torch.nn.Sequential(snn.SubMConv3d(4, 8), snn.SparseReLU(), snn.SparseConv3d(8, 16, kernel_size=2, stride=2),
                              snn.SparseReLU(), snn.SparseInverseConv3d(16, 8, kernel_size=2, stride=2))
    expected = net(SparseTensor(coords, feats, spatial_shape=shape))
    net.cuda()
    got = net(SparseTensor(coords.cuda(), feats.cuda(), spatial_shape=shape))
    assert torch.equal(got.coords.cpu(), expected.coords)
    torch.testing.assert_close(got.feats.cpu(), expected.feats, rtol=1e-5, atol=1e-5)

    torch._dynamo.reset()
    fn = torch.compile(lambda c, x: net(SparseTensor(c, x, spatial_shape=shape)).feats, fullgraph=True)
    torch.testing.assert_close(fn(coords.cuda(), feats.cuda()).cpu(), expected.feats, rtol=1e-5, atol=1e-5)
