"""Launched by tests/test_distributed.py under torchrun (gloo, CPU): one case per launch, each rank
writing its results to its own file in the output folder; the test compares them with one process.

    torchrun --standalone --nproc-per-node 2 tests/distributed_worker.py syncbn OUT_DIR
"""
from __future__ import annotations

import os
import sys

import torch

from fastperc import distributed
from fastperc.sparse import SparseTensor
from fastperc.sparse.nn import SparseSyncBatchNorm

CHANNELS = 5
STEPS = 3  # training calls per scenario: the running statistics move more than once
# (name, sites per rank, dtype, layer options). Different counts per rank, a rank without sites, features
# far from zero (the variance must not cancel), the cumulative-average momentum, no affine parameters.
SCENARIOS = (
    ("uneven_float64", (37, 90), torch.float64, {}),
    ("empty_rank", (0, 50), torch.float64, {"momentum": None}),
    ("float32_offset", (64, 23), torch.float32, {"affine": False}),
)


def scenario_inputs(counts, dtype, seed=0):
    """The union of every rank's sites (unique, in a 16^3 grid, batch = rank), features with a large
    offset, the upstream gradient, and the layer's parameters: the same on every rank and in the test."""
    g = torch.Generator().manual_seed(seed)
    total = sum(counts)
    cells = torch.randperm(16 ** 3, generator=g)[:total]
    xyz = torch.stack([cells // 256, cells // 16 % 16, cells % 16], 1)
    batch = torch.cat([torch.full((n,), r) for r, n in enumerate(counts)])
    coords = torch.cat([batch[:, None], xyz], 1).to(torch.int32)
    feats = (100.0 + 3.0 * torch.randn(total, CHANNELS, generator=g, dtype=torch.float64)).to(dtype)
    upstream = [torch.randn(total, CHANNELS, generator=g, dtype=torch.float64).to(dtype) for _ in range(STEPS)]
    weight = (1.0 + 0.5 * torch.randn(CHANNELS, generator=g, dtype=torch.float64)).to(dtype)
    bias = torch.randn(CHANNELS, generator=g, dtype=torch.float64).to(dtype)
    return coords, feats, upstream, weight, bias


def rank_rows(counts, rank):
    start = sum(counts[:rank])
    return slice(start, start + counts[rank])


def run_layer(layer, coords, feats, upstream, weight, bias):
    """STEPS training calls (forward, backward of sum(y * upstream)), then one eval call. Returns
    outputs and gradients of every call, and the final state."""
    if layer.affine:
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
    out = {"y": [], "grad_x": [], "grad_weight": [], "grad_bias": []}
    for up in upstream:
        x = feats.clone().requires_grad_(True)
        y = layer(SparseTensor(coords, x))
        (y.feats * up).sum().backward()
        out["y"].append(y.feats.detach())
        out["grad_x"].append(x.grad)
        if layer.affine:
            out["grad_weight"].append(layer.weight.grad.clone())
            out["grad_bias"].append(layer.bias.grad.clone())
            layer.weight.grad = layer.bias.grad = None
    layer.eval()
    with torch.no_grad():
        out["eval_y"] = layer(SparseTensor(coords, feats)).feats
    out["running_mean"], out["running_var"] = layer.running_mean.clone(), layer.running_var.clone()
    return out


def syncbn(out_dir):
    rank = distributed.rank()
    results = {}
    for name, counts, dtype, options in SCENARIOS:
        coords, feats, upstream, weight, bias = scenario_inputs(counts, dtype)
        rows = rank_rows(counts, rank)
        layer = SparseSyncBatchNorm(CHANNELS, **options).to(dtype)
        results[name] = run_layer(layer, coords[rows], feats[rows], [u[rows] for u in upstream], weight, bias)
    torch.save(results, os.path.join(out_dir, f"syncbn_rank{rank}.pt"))


CASES = {"syncbn": syncbn}

if __name__ == "__main__":
    case, out_dir = sys.argv[1], sys.argv[2]
    distributed.setup("cpu")
    CASES[case](out_dir)
    distributed.cleanup()
