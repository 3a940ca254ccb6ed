"""pytest-benchmark: one Gatys style-transfer step (VGG19 forward + style and content losses +
backward), fastperc's fused style loss vs the plain-PyTorch composite; and the losses alone.

Run: pytest benchmarks/test_bench_perceptual.py --benchmark-group-by=group --benchmark-columns=median,iqr
`fastperc bench --op perceptual` prints the same comparison as ratios.
"""
import pytest
import torch

from fastperc import bench_perceptual as bp

SHAPES = sorted(set(bp.SHAPES["cpu"] + bp.SHAPES["cuda"]))


@pytest.mark.parametrize("impl", ["fastperc", "torch"])
@pytest.mark.parametrize("what", ["step", "loss only"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_perceptual_step(benchmark, device, shape, what, impl):
    if shape not in bp.SHAPES[device]:
        pytest.skip(f"{shape} is not a {device} workload")
    net, image, style_feats, content_feats = bp.setup(shape, device, torch.float32)
    fn = (bp.step_fn(impl, net, image, style_feats, content_feats) if what == "step"
          else bp.loss_only_fn(impl, net, image, style_feats))
    benchmark.group = f"perceptual {what} {'x'.join(map(str, shape))} {device}"
    benchmark(lambda: (fn(), torch.cuda.synchronize() if device == "cuda" else None))
