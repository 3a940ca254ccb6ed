"""`fastperc bench`: fastperc kernels vs the pure-PyTorch reference vs the plain torch composite.

Every row runs on the same inputs in one process. GFLOP/s count the dense work of the composite
(2BC^2N for a Gram, 6BC^2N for forward + backward) for every implementation, so they compare like
for like; "%peak" divides by a square GEMM (torch.mm) measured at the start of the run on the same
device. "err" is the largest deviation from a float64 reference, relative to its largest entry.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from fastperc import _backend, reference
from fastperc.functional.gram import gram_matrix, style_loss

# VGG-19 feature shapes (relu1_1 .. relu5_1 of a 256x256 or 512x512 image) and a batched one.
GRAM_SHAPES = [(1, 64, 256, 256), (1, 128, 128, 128), (1, 256, 64, 64), (1, 512, 32, 32), (8, 256, 64, 64)]
QUICK_SHAPES = [(1, 64, 64, 64), (2, 128, 16, 16)]
OPS = ("gram", "style")
MODES = ("fwd", "fwd+bwd")
IMPLS = ("fastperc", "reference", "torch")


@dataclass
class Case:
    op: str
    mode: str
    shape: tuple
    impl: str
    run: Callable[[], torch.Tensor]  # returns the checked result (Gram, loss, or gradient of x)


def _torch_gram(x):
    """What users write (pytorch/examples): bmm in the features' dtype, divided by C*H*W."""
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def _impl_gram(impl: str):
    if impl == "fastperc":
        return gram_matrix
    if impl == "reference":

        def ref(x):
            f = x.flatten(2)
            return reference.gram(f, 1.0 / (f.shape[1] * f.shape[2]))

        return ref
    return _torch_gram


def _impl_style(impl: str):
    if impl == "fastperc":
        return style_loss
    if impl == "reference":

        def ref(x, target):
            f = x.flatten(2)
            scale = 1.0 / (f.shape[1] * f.shape[2])
            return reference.style_loss(f, target, scale, 1.0 / (f.shape[0] * f.shape[1] ** 2))[0]

        return ref
    return lambda x, target: F.mse_loss(_torch_gram(x), target.to(x.dtype).expand(x.shape[0], -1, -1))


def make_case(op: str, mode: str, shape: tuple, impl: str, device: str, dtype=torch.float32, seed: int = 0) -> Case:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    c = shape[1]
    grad_out = torch.randn((shape[0], c, c), generator=gen, dtype=torch.float64).to(device=device)
    target = gram_matrix(torch.randn((1,) + tuple(shape[1:]), generator=gen).to(device=device, dtype=dtype))
    if impl == "fastperc" or impl == "reference":
        _backend.force_reference = False
    fn = _impl_gram(impl) if op == "gram" else _impl_style(impl)

    def forward(inp):
        return fn(inp) if op == "gram" else fn(inp, target)

    if mode == "fwd":
        return Case(op, mode, shape, impl, lambda: forward(x))

    leaf = x.detach().requires_grad_(True)
    g = grad_out.to(torch.float32 if dtype != torch.float64 else dtype)

    def forward_backward():
        leaf.grad = None
        out = forward(leaf)
        out.backward(g.to(out.dtype) if op == "gram" else None)
        return leaf.grad

    return Case(op, mode, shape, impl, forward_backward)


def expected(op: str, mode: str, shape: tuple, device: str, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """The float64 reference result for make_case's inputs."""
    return make_case(op, mode, shape, "reference", device, dtype=torch.float64, seed=seed).run().double()


def _sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(fn: Callable, device: str, min_time: float = 0.3, min_runs: int = 5, max_runs: int = 200,
            best: bool = False) -> float:
    """Median (or, with best=True, shortest) wall time of fn in milliseconds, after two warm-up runs."""
    for _ in range(2):
        fn()
    _sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * (min(times) if best else statistics.median(times))


def gemm_peak_gflops(device: str, dtype=torch.float32) -> float:
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    # The fastest of several runs: a ceiling is what %peak divides by.
    return 2 * n**3 / time_ms(lambda: torch.mm(a, b), device, min_runs=8, best=True) / 1e6


def flops(op: str, mode: str, shape: tuple) -> float:
    b, c = shape[0], shape[1]
    n = math.prod(shape[2:])
    return (2 if mode == "fwd" else 6) * b * c * c * n


def run(ops=OPS, device: str = "cpu", quick: bool = False, dtype=torch.float32, shapes=None, min_time: float = 0.3):
    """Runs the comparison and returns a list of row dicts (see format_table)."""
    shapes = shapes or (QUICK_SHAPES if quick else GRAM_SHAPES)
    peak = gemm_peak_gflops(device)
    rows = []
    for op in ops:
        for mode in MODES:
            for shape in shapes:
                truth = expected(op, mode, shape, device, dtype)
                timed = {}
                for impl in IMPLS:
                    case = make_case(op, mode, shape, impl, device, dtype)
                    result = case.run().double()
                    err = ((result - truth).abs().max() / truth.abs().max().clamp_min(1e-300)).item()
                    ms = time_ms(case.run, device, min_time=0.05 if quick else min_time)
                    timed[impl] = ms
                    gflops = flops(op, mode, shape) / ms / 1e6
                    rows.append(dict(op=op, mode=mode, shape="x".join(map(str, shape)), impl=impl, ms=ms,
                                     gflops=gflops, peak_pct=100 * gflops / peak, err=err))
                for row in rows[-len(IMPLS):]:
                    row["speedup"] = timed["torch"] / row["ms"]
    return {"device": device, "dtype": str(dtype).replace("torch.", ""), "gemm_peak_gflops": peak,
            "threads": torch.get_num_threads(), "rows": rows}


def format_table(result: dict) -> str:
    head = (f"device={result['device']} dtype={result['dtype']} threads={result['threads']} "
            f"GEMM peak (torch.mm)={result['gemm_peak_gflops']:.0f} GFLOP/s")
    cols = f"{'op':<6}{'mode':<9}{'shape':<15}{'impl':<11}{'ms':>9}{'GFLOP/s':>9}{'%peak':>7}{'vs torch':>10}{'err':>10}"
    lines = [head, cols, "-" * len(cols)]
    for r in result["rows"]:
        lines.append(f"{r['op']:<6}{r['mode']:<9}{r['shape']:<15}{r['impl']:<11}{r['ms']:>9.3f}{r['gflops']:>9.1f}"
                     f"{r['peak_pct']:>7.0f}{r['speedup']:>9.2f}x{r['err']:>10.1e}")
    lines.extend(summary_lines(result))
    return "\n".join(lines)


def summary_lines(result: dict):
    """Geometric-mean speedup of fastperc over the torch composite, per op and mode."""
    out = []
    for op in OPS:
        for mode in MODES:
            s = [r["speedup"] for r in result["rows"] if r["op"] == op and r["mode"] == mode and r["impl"] == "fastperc"]
            if s:
                gm = math.exp(sum(math.log(v) for v in s) / len(s))
                out.append(f"fastperc {op} {mode}: geometric-mean speedup over torch {gm:.2f}x "
                           f"(min {min(s):.2f}x, max {max(s):.2f}x)")
    return out
