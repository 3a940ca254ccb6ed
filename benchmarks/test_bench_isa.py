"""pytest-benchmark: fastperc's CPU kernels once per micro-kernel ISA this CPU runs (the same binary capped,
as FASTPERC_CPU_ISA does), and a check that fails loudly when an ISA path is slower than the generic
one for any op: the avx2 SSIM stages once were (issue 12), and nobody saw it for lack of this check.

Run: pytest benchmarks/test_bench_isa.py --benchmark-group-by=group --benchmark-columns=median,iqr
The check runs last and compares the medians of this run; a 5 % margin absorbs timing noise.
"""
import pytest
import torch

from fastperc import _backend, bench, bench_sparse
from fastperc.sparse import functional as SF, voxelize

ISAS = _backend.build_info().get("cpu_isas", "generic").split(",")
MARGIN = 1.05
CASES = ([(op, mode, shape) for op in bench.GRAM_OPS for mode in bench.MODES for shape in bench.GRAM_SHAPES[:4]]
         + [(op, mode, (1, 3, 512, 512)) for op in ("ssim", "msssim", "l1ssim") for mode in bench.MODES]
         + [("ssim3d", mode, (1, 1, 128, 128, 128)) for mode in bench.MODES]
         + [("subm", mode, (voxel, channels)) for mode in bench.MODES for voxel, channels in bench_sparse.WORKLOADS])
MEDIANS = {}  # (op, mode, shape) -> {isa: median seconds}


@pytest.fixture(scope="module")
def scans():
    points, _ = bench_sparse.load_points(None)
    return {v: voxelize(points, v) for v, _ in bench_sparse.WORKLOADS}


def _subm_call(x, channels, mode):
    kmap = SF.kernel_map(x.coords, x.coords, (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3)
    feats = torch.randn(len(x.coords), channels, requires_grad=mode == "fwd+bwd")
    weight = torch.randn(27, channels, channels, requires_grad=mode == "fwd+bwd")
    grad = torch.randn(len(x.coords), channels)  # the output's gradient (no loss: see fastperc.bench_sparse)

    def run():
        out = torch.ops.fastperc.sparse_conv(feats, weight, kmap)
        if mode == "fwd+bwd":
            torch.autograd.grad(out, (feats, weight), grad)

    return run


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op,mode,shape", CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v)
def test_fastperc_per_isa(benchmark, request, op, mode, shape, isa):
    if op == "subm":
        call = _subm_call(request.getfixturevalue("scans")[shape[0]], shape[1], mode)
    else:
        call = next(c for c in bench.cases(op, mode, shape, "cpu") if c.impl == "fastperc").run
    benchmark.group = f"{op} {mode} {'x'.join(map(str, shape))} per ISA"
    old = _backend._C.cpu_isa()
    _backend._C.set_cpu_isa(isa)
    try:
        benchmark(call)
    finally:
        _backend._C.set_cpu_isa(old)
    if benchmark.stats is not None:  # None under --benchmark-disable
        MEDIANS.setdefault((op, mode, shape), {})[isa] = benchmark.stats.stats.median


def test_no_isa_path_is_slower_than_generic():
    slower = [f"{op} {mode} {'x'.join(map(str, shape))}: {isa} {1e3 * t[isa]:.2f} ms > generic {1e3 * t['generic']:.2f} ms"
              for (op, mode, shape), t in MEDIANS.items() for isa in t
              if isa != "generic" and "generic" in t and t[isa] > MARGIN * t["generic"]]
    assert not slower, "ISA PATHS SLOWER THAN THE GENERIC ONE:\n  " + "\n  ".join(slower)
