"""pytest-benchmark: SSIM, MS-SSIM and the L1 + SSIM loss, forward and forward+backward, beside the
pure-PyTorch reference and every installed peer (pytorch-msssim, kornia, torchmetrics, piq, skimage).

Run: pytest benchmarks/test_bench_ssim.py --benchmark-group-by=group --benchmark-columns=median,iqr
(FASTPERC_BENCH_DEVICE=cuda for the GPU shapes). fastperc/bench.py builds the same cases as
`fastperc bench --op ssim|msssim|l1ssim`.
"""
import pytest
import torch

from fastperc import bench


def _params(device):
    out = []
    for op in ("ssim", "msssim", "l1ssim"):
        for mode in bench.MODES:
            for shape in bench.IMAGE_SHAPES[device]:
                out.append((op, mode, shape))
    return out


ALL = sorted(set(_params("cpu") + _params("cuda")), key=str)
IDS = lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731


@pytest.mark.parametrize("op,mode,shape", ALL, ids=IDS)
def test_ssim_family(benchmark, device, op, mode, shape):
    if shape not in bench.IMAGE_SHAPES[device]:
        pytest.skip(f"{shape} is not a {device} workload")
    group = bench.cases(op, mode, shape, device)
    benchmark.group = f"{op} {mode} {'x'.join(map(str, shape))} {device}"
    # pytest-benchmark times one callable per test: fastperc here; the others via test_ssim_peer.
    case = next(c for c in group if c.impl == "fastperc")
    benchmark(lambda: (case.run(), torch.cuda.synchronize() if device == "cuda" else None))


@pytest.mark.parametrize("impl", ["reference", "pytorch_msssim", "kornia", "torchmetrics", "piq", "skimage", "torch (3DGS code)"])
@pytest.mark.parametrize("op,mode,shape", ALL, ids=IDS)
def test_ssim_peer(benchmark, device, op, mode, shape, impl):
    if shape not in bench.IMAGE_SHAPES[device]:
        pytest.skip(f"{shape} is not a {device} workload")
    group = {c.impl: c for c in bench.cases(op, mode, shape, device)}
    if impl not in group:
        pytest.skip(f"{impl} does not implement {op} {mode} here (or is not installed)")
    benchmark.group = f"{op} {mode} {'x'.join(map(str, shape))} {device}"
    case = group[impl]
    benchmark(lambda: (case.run(), torch.cuda.synchronize() if device == "cuda" else None))
