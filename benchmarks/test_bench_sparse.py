"""pytest-benchmark: submanifold 3x3x3 convolution on the LiDAR scan (fastperc/bench_sparse.py builds the
same workloads as `fastperc bench --op subm`): kernel map, forward, forward+backward."""
import pytest
import torch

from fastperc import bench_sparse, reference
from fastperc.sparse import functional as SF, voxelize


@pytest.fixture(scope="module")
def scans():
    points, _ = bench_sparse.load_points(None)
    return {v: voxelize(points, v) for v, _ in bench_sparse.WORKLOADS}


@pytest.mark.parametrize("impl", ["fastperc", "reference"])
@pytest.mark.parametrize("mode", ["map", "fwd", "fwd+bwd"])
@pytest.mark.parametrize("voxel,channels", bench_sparse.WORKLOADS)
def test_subm(benchmark, scans, voxel, channels, mode, impl):
    x = scans[voxel]
    benchmark.group = f"subm {mode} {int(voxel * 100)}cm C={channels}"
    args = ((3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3)
    if mode == "map":
        fn = (lambda: SF.kernel_map(x.coords, x.coords, *args)) if impl == "fastperc" else (
            lambda: reference.sparse.kernel_map(x.coords, x.coords, *args))
        benchmark(fn)
        return
    kmap = SF.kernel_map(x.coords, x.coords, *args)
    feats = torch.randn(len(x.coords), channels, requires_grad=mode == "fwd+bwd")
    weight = torch.randn(27, channels, channels, requires_grad=mode == "fwd+bwd")  # a training step: both gradients
    conv = torch.ops.fastperc.sparse_conv if impl == "fastperc" else reference.sparse.conv
    grad = torch.randn(len(x.coords), channels)  # the output's gradient (no loss: see fastperc.bench_sparse)

    def run():
        out = conv(feats, weight, kmap)
        if mode == "fwd+bwd":
            torch.autograd.grad(out, (feats, weight), grad)

    benchmark(run)
