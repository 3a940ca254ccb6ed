"""A small MinkUNet-style segmentation network for SparseTensors (after Choy et al. 2019).

Encoder: two submanifold blocks per level, stride-2 SparseConv3d downsampling; decoder:
SparseInverseConv3d back to the finer sites (reusing the encoder's kernel maps) with skip connections
(feature concatenation on identical sites); a per-site linear head. Under DistributedDataParallel, turn
its SparseBatchNorm layers into SparseSyncBatchNorm (fastperc.sparse.nn.convert_sync_batchnorm) so the
statistics are those of every rank's sites.
"""
from __future__ import annotations

import torch

from fastperc.sparse import nn as snn
from fastperc.sparse.tensor import SparseTensor


def block(cin: int, cout: int) -> torch.nn.Sequential:
    # No conv bias before a batch norm: the norm's mean removes it (its gradient is rounding noise,
    # which Adam would scale up to full-size steps).
    return torch.nn.Sequential(snn.SubMConv3d(cin, cout, bias=False), snn.SparseBatchNorm(cout), snn.SparseReLU(),
                               snn.SubMConv3d(cout, cout, bias=False), snn.SparseBatchNorm(cout), snn.SparseReLU())


class MinkUNet(torch.nn.Module):
    def __init__(self, in_channels: int = 3, classes: int = 4, widths=(16, 32, 64)):
        super().__init__()
        w0, w1, w2 = widths
        self.stem = block(in_channels, w0)
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
        """(N, classes) logits, one row per input site, in the input's site order."""
        s0 = self.stem(x)
        s1 = self.enc1(self.down1(s0))
        s2 = self.enc2(self.down2(s1))
        u1 = self.up2(s2)
        d1 = self.dec1(u1.replace(torch.cat([u1.feats, s1.feats], 1)))
        u0 = self.up1(d1)
        d0 = self.dec0(u0.replace(torch.cat([u0.feats, s0.feats], 1)))
        return self.head(d0.feats)
