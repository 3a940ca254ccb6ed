"""A small MinkUNet-style segmentation network on a real LiDAR scan: forward, backward, timing; on one
process or data-parallel over several with torchrun.

    python examples/minkunet_scan.py [--scan NPZ|synthetic] [--voxel 0.1] [--steps 3] [--tiles 4]
    torchrun --nproc-per-node 2 examples/minkunet_scan.py [same options]

The scan is cut into --tiles sectors around the sensor, one batch item each; under torchrun each rank
takes its share of the tiles (tile i goes to rank i mod world), the network runs under
DistributedDataParallel with its batch norms converted to SparseSyncBatchNorm (statistics over every
rank's sites), and the loss is the mean over every rank's sites (fastperc.distributed.mean_over_ranks):
so N processes take exactly the steps one process takes on all tiles. The per-voxel label is synthetic
(height above the lowest voxel, binned), so that the loss visibly decreases.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

import fastperc
from fastperc import distributed
from fastperc.bench_sparse import load_points
from fastperc.models import MinkUNet
from fastperc.sparse import nn as snn

CLASSES = 4


def sector_tiles(points: torch.Tensor, tiles: int) -> torch.Tensor:
    """(N,) tile index of each point: equal azimuth sectors around the sensor (the origin)."""
    azimuth = torch.atan2(points[:, 1], points[:, 0])  # in [-pi, pi]
    return ((azimuth + math.pi) / (2 * math.pi) * tiles).long().clamp(max=tiles - 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", default=None, help="an .npz point cloud, or 'synthetic' (default: the shipped scan)")
    parser.add_argument("--voxel", type=float, default=0.1, help="voxel size in metres")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tiles", type=int, default=4, help="sectors of the scan, one batch item each")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--checkpoint", metavar="PT", help="write the trained network's state_dict here (rank 0)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.tiles < 1:
        parser.error("--steps and --tiles must be >= 1")
    device = distributed.setup(args.device)
    world = distributed.world_size()
    if args.tiles < world:
        parser.error(f"--tiles {args.tiles} leaves a rank without data; use at least {world}")
    torch.manual_seed(0)  # the same initial network on every rank (DDP also broadcasts rank 0's)
    dtype = getattr(torch, args.dtype)
    points, source = load_points(args.scan)
    x = fastperc.sparse.voxelize(points, args.voxel, batch=sector_tiles(points, args.tiles))
    z = x.coords[:, 3].to(torch.float64)
    labels = ((z - z.min()) / (z.max() - z.min() + 1e-6) * CLASSES).long().clamp(max=CLASSES - 1)
    mine = distributed.shard(range(args.tiles))
    keep = torch.isin(x.coords[:, 0], torch.tensor(mine, dtype=x.coords.dtype))
    x, labels = fastperc.sparse.select_batch(x, mine), labels[keep]
    x, labels = x.to(device, dtype), labels.to(device)

    net = MinkUNet(classes=CLASSES).to(device, dtype)
    if distributed.launched():
        net = torch.nn.parallel.DistributedDataParallel(snn.convert_sync_batchnorm(net))
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    say = print if distributed.is_main_process() else (lambda *a, **k: None)
    say(f"scan: {source}, {len(points)} points, {args.tiles} tiles at {args.voxel} m; "
        f"rank 0 of {world} holds tiles {mine}: {len(x.coords)} voxels")
    for step in range(args.steps):
        t0 = time.perf_counter()
        logits = net(x)
        loss = distributed.mean_over_ranks(torch.nn.functional.cross_entropy(logits, labels, reduction="none"))
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        mean_loss = distributed.all_reduce_mean(loss.detach())  # the mean over every rank's sites
        say(f"step {step}: loss {mean_loss.item():.6f}  forward {1e3 * (t1 - t0):.0f} ms  "
            f"backward {1e3 * (t2 - t1):.0f} ms")
    if args.checkpoint and distributed.is_main_process():
        module = net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net
        torch.save(module.state_dict(), args.checkpoint)
        say(f"wrote {args.checkpoint}")
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
