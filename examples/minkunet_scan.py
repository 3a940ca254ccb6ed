"""A small MinkUNet-style segmentation network on a real LiDAR scan: forward, backward, timing.

    python examples/minkunet_scan.py [--scan NPZ|synthetic] [--voxel 0.1] [--steps 3]

Encoder: SubMConv3d blocks and stride-2 SparseConv3d downsampling; decoder: SparseInverseConv3d back
to the finer sites (reusing the encoder's kernel maps) with skip connections (feature concatenation on
identical sites); a per-voxel classification head trained for a few steps on a synthetic label
(height above the lowest voxel, binned), so that the loss visibly decreases.
"""
from __future__ import annotations

import argparse
import time

import torch

import fastperc
from fastperc.bench_sparse import load_points
from fastperc.sparse import SparseTensor, nn as snn


def block(cin, cout):
    return torch.nn.Sequential(snn.SubMConv3d(cin, cout), snn.SparseBatchNorm(cout), snn.SparseReLU(),
                               snn.SubMConv3d(cout, cout), snn.SparseBatchNorm(cout), snn.SparseReLU())


class MiniMinkUNet(torch.nn.Module):
    def __init__(self, cin=3, classes=4, widths=(16, 32, 64)):
        super().__init__()
        w0, w1, w2 = widths
        self.stem = block(cin, w0)
        self.down1 = snn.SparseConv3d(w0, w1, kernel_size=2, stride=2)
        self.enc1 = block(w1, w1)
        self.down2 = snn.SparseConv3d(w1, w2, kernel_size=2, stride=2)
        self.enc2 = block(w2, w2)
        self.up2 = snn.SparseInverseConv3d(w2, w1, kernel_size=2, stride=2)
        self.dec1 = block(2 * w1, w1)
        self.up1 = snn.SparseInverseConv3d(w1, w0, kernel_size=2, stride=2)
        self.dec0 = block(2 * w0, w0)
        self.head = torch.nn.Linear(w0, classes)

    def forward(self, x: SparseTensor) -> torch.Tensor:
        s0 = self.stem(x)
        s1 = self.enc1(self.down1(s0))
        s2 = self.enc2(self.down2(s1))
        u1 = self.up2(s2)
        d1 = self.dec1(u1.replace(torch.cat([u1.feats, s1.feats], 1)))
        u0 = self.up1(d1)
        d0 = self.dec0(u0.replace(torch.cat([u0.feats, s0.feats], 1)))
        return self.head(d0.feats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", default=None)
    parser.add_argument("--voxel", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    points, source = load_points(args.scan)
    x = fastperc.sparse.voxelize(points, args.voxel)
    z = x.coords[:, 3].float()
    labels = ((z - z.min()) / (z.max() - z.min() + 1e-6) * 4).long().clamp(max=3)
    net = MiniMinkUNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    print(f"scan: {source}, {len(points)} points -> {len(x.coords)} voxels at {args.voxel} m")
    for step in range(args.steps):
        t0 = time.perf_counter()
        logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        print(f"step {step}: loss {loss.item():.4f}  forward {1e3 * (t1 - t0):.0f} ms  backward {1e3 * (t2 - t1):.0f} ms")


if __name__ == "__main__":
    main()
