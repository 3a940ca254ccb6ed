"""pytest-benchmark: Gram and style loss, forward and forward+backward, at the VGG feature shapes.

Run: pytest benchmarks/test_bench_gram.py --benchmark-group-by=group --benchmark-columns=median,iqr,ops
Each group holds fastperc, the pure-PyTorch reference and the plain torch composite on the same
inputs (fastperc/bench.py builds the cases; `fastperc bench` prints the same comparison as ratios).
"""
import pytest
import torch

from fastperc import bench


@pytest.mark.parametrize("impl", ["fastperc", "reference", "torch"])
@pytest.mark.parametrize("shape", bench.GRAM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", bench.MODES)
@pytest.mark.parametrize("op", bench.GRAM_OPS)
def test_gram_and_style(benchmark, device, op, mode, shape, impl):
    case = next(c for c in bench.cases(op, mode, shape, device) if c.impl == impl)
    benchmark.group = f"{op} {mode} {'x'.join(map(str, shape))} {device}"
    benchmark.extra_info["gflop_dense"] = bench.flops(op, mode, shape) / 1e9
    benchmark(lambda: (case.run(), torch.cuda.synchronize() if device == "cuda" else None))
