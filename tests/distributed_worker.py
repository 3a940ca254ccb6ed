"""Launched by tests/test_distributed.py under torchrun (gloo, CPU): one case per launch, each rank
writing its results to its own file in the output folder; the test compares them with one process.

    torchrun --standalone --nproc-per-node 2 tests/distributed_worker.py syncbn OUT_DIR
"""
from __future__ import annotations

import os
import sys

import torch

from fastperc import distributed
from fastperc.sparse import SparseTensor, select_batch
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


def image_batch(count=4, size=48, seed=1):
    """The global batch of the loss-module case: (inputs, targets), the same on every rank."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(count, 3, size, size, generator=g, dtype=torch.float64)
    target = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    return x, target, torch.rand(1, 3, size, size, generator=g, dtype=torch.float64)


def every_loss(style_image):
    """(weight, module, takes_target): each loss module of fastperc, with its default (mean) reduction."""
    from fastperc import losses, nn as fnn
    from fastperc.models import vgg16

    vgg = vgg16().double()
    return [
        (1.0, fnn.SSIMLoss(1.0), True),
        (1.0, fnn.MSSSIMLoss(1.0, weights=(0.3, 0.3, 0.4), win_size=7), True),
        (1.0, fnn.L1SSIMLoss(1.0), True),
        (1.0, losses.MAELoss(), True),
        (1.0, losses.MSELoss(), True),
        (1.0, losses.RMSELoss(), True),
        (-0.01, losses.PSNR(1.0), True),
        (1.0, losses.PerceptualLoss(("relu1_2", "relu2_2"), extractor=vgg), True),
        (1e3, losses.VGGStyleLoss(style_image, ("relu1_2", "relu2_2"), extractor=vgg), False),
        (1.0, losses.LPIPS("alex").double(), True),
    ]


def point_clouds(count=4, seed=2):
    """count voxelised clouds of different sizes (batch item i = cloud i) and a class label each."""
    from fastperc.sparse import voxelize

    g = torch.Generator().manual_seed(seed)
    points, batch = [], []
    for i in range(count):
        n = 300 + 150 * i
        points.append(torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor([6.0, 6.0, 3.0 + i]))
        batch.append(torch.full((n,), i))
    x = voxelize(torch.cat(points), 0.5, batch=torch.cat(batch))
    return x.replace(x.feats.to(torch.float64)), torch.tensor([0, 1, 1, 0])


class EverySparseLayer(torch.nn.Module):
    """Every sparse layer but SparseDropout (its random masks follow the sharding) in one small net."""

    def __init__(self, classes=2):
        super().__init__()
        from fastperc.sparse import nn as snn

        self.subm = snn.SubMConv3d(3, 8, bias=False)
        self.norm = snn.SparseBatchNorm(8)
        self.relu = snn.SparseReLU()
        self.down = snn.SparseConv3d(8, 8, 3, stride=2, padding=1)
        self.up = snn.SparseInverseConv3d(8, 8, 3, stride=2, padding=1)
        self.max_pool, self.avg_pool = snn.SparseMaxPool3d(2), snn.SparseAvgPool3d(2)
        self.transposed = snn.SparseConvTranspose3d(8, 4, 2, stride=2)
        self.mean, self.max = snn.SparseGlobalPool("mean"), snn.SparseGlobalPool("max")
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x, batch_size):
        a = self.relu(self.norm(self.subm(x)))
        b = self.up(self.down(a))
        c = a.replace(a.feats + b.feats)
        pooled = self.max_pool(c)
        d = pooled.replace(pooled.feats + self.avg_pool(c).feats)
        e = self.transposed(d)
        return self.head(torch.cat([self.mean(e, batch_size), self.max(e, batch_size)], 1))


def train_modules(steps=2, lr=0.05):
    """SGD steps of a conv layer under every loss module and of EverySparseLayer, each rank on its share
    of the global batch (all of it without a process group). Returns the losses and final parameters."""
    from fastperc.sparse import nn as snn

    torch.manual_seed(0)
    x_all, target_all, style_image = image_batch()
    terms = every_loss(style_image)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).double()
    sparse_net = snn.convert_sync_batchnorm(EverySparseLayer().double())
    clouds, labels_all = point_clouds()
    mine = distributed.shard(range(len(x_all)))
    x, target = x_all[mine], target_all[mine]
    cloud, labels = select_batch(clouds, mine), labels_all[mine]
    if distributed.launched():
        conv = torch.nn.parallel.DistributedDataParallel(conv)
        sparse_net = torch.nn.parallel.DistributedDataParallel(sparse_net)
    opt = torch.optim.SGD([*conv.parameters(), *sparse_net.parameters()], lr=lr)
    losses = []
    for _ in range(steps):
        y = torch.sigmoid(conv(x))
        dense = sum(w * (module(y, target) if takes_target else module(y)) for w, module, takes_target in terms)
        sparse = torch.nn.functional.cross_entropy(sparse_net(cloud, len(mine)), labels)
        opt.zero_grad()
        (dense + sparse).backward()
        opt.step()
        losses.append(distributed.all_reduce_mean(torch.stack([dense, sparse]).detach()))
    unwrap = (lambda m: m.module) if distributed.launched() else (lambda m: m)
    return {"losses": torch.stack(losses), **{f"conv.{k}": v for k, v in unwrap(conv).state_dict().items()},
            **{f"sparse.{k}": v for k, v in unwrap(sparse_net).state_dict().items()}}


def modules(out_dir):
    state = train_modules()
    if distributed.is_main_process():
        torch.save(state, os.path.join(out_dir, "modules.pt"))


CASES = {"syncbn": syncbn, "modules": modules}

if __name__ == "__main__":
    case, out_dir = sys.argv[1], sys.argv[2]
    distributed.setup("cpu")
    CASES[case](out_dir)
    distributed.cleanup()
    # The threads left once the case's objects (DDP, which holds the group) are gone: gloo's would run
    # on into interpreter exit. Linux names them in /proc.
    if os.path.isdir("/proc/self/task"):
        names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
        with open(os.path.join(out_dir, f"threads_rank{distributed.rank()}.txt"), "w") as f:
            f.write("\n".join(names))
