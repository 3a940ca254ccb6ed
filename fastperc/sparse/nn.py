"""Sparse convolution layers and feature-wise layers for SparseTensors."""
from __future__ import annotations

import math

import torch

from fastperc.sparse import functional as SF
from fastperc.sparse.tensor import SparseTensor


class _SparseConvBase(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        super().__init__()
        self.kernel_size = SF.triple(kernel_size, "kernel_size", 1)
        self.stride, self.padding = SF.triple(stride, "stride", 1), SF.triple(padding, "padding", 0)
        self.dilation = SF.triple(dilation, "dilation", 1)
        volume = math.prod(self.kernel_size)
        # conv3d's default init (kaiming uniform with a = sqrt(5)): bound 1 / sqrt(fan_in)
        bound = 1.0 / math.sqrt(in_channels * volume)
        self.weight = torch.nn.Parameter(torch.empty(volume, in_channels, out_channels).uniform_(-bound, bound))
        self.bias = torch.nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None

    def extra_repr(self):
        v, ci, co = self.weight.shape
        return (f"{ci}, {co}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, bias={self.bias is not None}")


class SubMConv3d(_SparseConvBase):
    """Submanifold convolution: output sites = input sites (odd kernel, "same" padding, stride 1)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, dilation=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, 1, 0, dilation, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.conv3d(x, self.weight, self.bias, self.kernel_size, 1, 0, self.dilation, mode="submanifold")


class SparseConv3d(_SparseConvBase):
    """Regular sparse convolution (spconv's SparseConv3d): every output site whose window holds an input."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.conv3d(x, self.weight, self.bias, self.kernel_size, self.stride, self.padding, self.dilation,
                         mode="regular")


class SparseConvTranspose3d(_SparseConvBase):
    """Transposed sparse convolution, exact against conv_transpose3d at its non-empty sites."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.conv3d(x, self.weight, self.bias, self.kernel_size, self.stride, self.padding, self.dilation,
                         mode="transposed")


class SparseInverseConv3d(_SparseConvBase):
    """Back to the sites of the SparseConv3d (same kernel parameters) that produced its input."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.inverse_conv3d(x, self.weight, self.bias, self.kernel_size, self.stride, self.padding, self.dilation)


class SparseMaxPool3d(torch.nn.Module):
    """Max over the active sites of each window (stride defaults to the kernel size)."""

    def __init__(self, kernel_size=2, stride=None, padding=0, dilation=1):
        super().__init__()
        self.args = (kernel_size, stride, padding, dilation)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.pool3d(x, *self.args, reduce="max")


class SparseAvgPool3d(SparseMaxPool3d):
    """Mean over the active sites of each window (stride defaults to the kernel size)."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.pool3d(x, *self.args, reduce="mean")


class SparseBatchNorm(torch.nn.BatchNorm1d):
    """BatchNorm over the active sites' features."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(super().forward(x.feats))


class SparseReLU(torch.nn.ReLU):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(super().forward(x.feats))


class SparseDropout(torch.nn.Dropout):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(super().forward(x.feats))


class SparseGlobalPool(torch.nn.Module):
    """(B, C) mean or max of the features of each batch item (items without sites give 0)."""

    def __init__(self, reduce: str = "mean"):
        super().__init__()
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        self.reduce = reduce

    def forward(self, x: SparseTensor, batch_size: int | None = None) -> torch.Tensor:
        b = x.batch_size if batch_size is None else batch_size
        index = x.coords[:, 0].long()[:, None].expand_as(x.feats)
        out = x.feats.new_zeros((b, x.feats.shape[1]))
        if self.reduce == "max":
            return out.scatter_reduce(0, index, x.feats, "amax", include_self=False)
        out = out.scatter_add(0, index, x.feats)
        counts = torch.bincount(x.coords[:, 0].long(), minlength=b).clamp(min=1).to(x.feats.dtype)
        return out / counts[:, None]


# Below SparseBatchNorm, which it extends: the distributed form of the layer and its converter.
from fastperc.sparse.sync_batchnorm import SparseSyncBatchNorm, convert_sync_batchnorm  # noqa: E402,F401
