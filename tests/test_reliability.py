"""Long-running behaviour: memory stays flat over 1000 calls of every op (forward and backward), and
results do not depend on the thread count."""
import os

import pytest
import torch

import fastperc
from fastperc.functional.ssim import window_1d
from fastperc.sparse.functional import invert_map
from conftest import num_threads

ops = torch.ops.fastperc


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def op_calls():
    """One small call of every op and of the public losses (with their backward)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 40, generator=g)
    y = torch.rand(2, 3, 40, 40, generator=g).permute(0, 1, 3, 2)  # a second layout in every call
    w = window_1d(11, 1.5, "gaussian", torch.float32, "cpu")
    feats = torch.randn(2, 16, 300, generator=g)
    target = fastperc.gram_matrix(torch.randn(1, 16, 300, generator=g))
    coords = torch.nonzero(torch.rand(1, 8, 8, 8, generator=g) < 0.3).to(torch.int32)
    sf = torch.randn(len(coords), 8, generator=g)
    sw = torch.randn(27, 8, 8, generator=g)
    sub = [[3] * 3, [1] * 3, [1] * 3, [1] * 3]
    kmap = ops.sparse_kernel_map(coords, coords, *sub, False)
    inv = invert_map(kmap, len(coords))
    xg = x.clone().requires_grad_()
    fg = feats.clone().requires_grad_()
    return {
        "gram": lambda: ops.gram(feats, 1.0),
        "style_loss fwd+bwd": lambda: fastperc.style_loss(fg, target).backward(),
        "gram_backward": lambda: ops.gram_backward(target.expand(2, 16, 16), feats, 1.0),
        "ssim": lambda: ops.ssim(x, y, w, 1e-4, 9e-4, 1),
        "ssim_map": lambda: ops.ssim_map(x, y, w, 1e-4, 9e-4, 2),
        "l1_ssim_loss fwd+bwd": lambda: fastperc.l1_ssim_loss(xg, y).backward(),
        "sparse_kernel_map": lambda: ops.sparse_kernel_map(coords, coords, *sub, False),
        "sparse_out_coords": lambda: ops.sparse_out_coords(coords, [3] * 3, [2] * 3, [1] * 3, [1] * 3, [8] * 3, False),
        "sparse_conv": lambda: ops.sparse_conv(sf, sw, kmap, inv),
        "sparse_conv_backward": lambda: ops.sparse_conv_backward(sf, sf, sw, kmap, inv),
        "bad input (error path)": lambda: pytest.raises(RuntimeError, ops.ssim, x, y[:, :1], w, 1e-4, 9e-4, 1),
    }


@pytest.mark.parametrize("name", list(op_calls()))
def test_memory_is_flat_over_1000_calls(name):
    call = op_calls()[name]
    for _ in range(100):  # warm up: allocator pools, autograd and dispatcher caches
        call()
    before = rss_bytes()
    for _ in range(1000):
        call()
    grown = rss_bytes() - before
    # A leak of one buffer per call would be >= 1000 x (a few KiB): several MiB. Allocator noise is less.
    assert grown < 4 << 20, f"{name}: RSS grew by {grown / 2**20:.1f} MiB over 1000 calls"


@pytest.mark.parametrize("name", [n for n in op_calls() if "bad input" not in n and "bwd" not in n])
def test_one_and_two_threads_give_identical_results(name):
    call = op_calls()[name]
    with num_threads(1):
        one = call()
    with num_threads(2):
        two = call()
    one, two = (o if isinstance(o, tuple) else (o,) for o in (one, two))
    assert all(torch.equal(a, b) for a, b in zip(one, two))
