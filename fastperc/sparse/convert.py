"""Weight layout converters. fastperc: (K, C_in, C_out), offset k = (kx * Ky + ky) * Kz + kz, where
x, y, z are the coordinate columns 1, 2, 3 (after batch) and the convolution reads input site
o * stride - padding + (kx, ky, kz) * dilation, exactly as torch's conv3d on a (B, C, X, Y, Z) grid.
"""
from __future__ import annotations

import torch


def from_conv3d(weight: torch.Tensor) -> torch.Tensor:
    """torch conv3d weight (C_out, C_in, Kx, Ky, Kz) -> (K, C_in, C_out)."""
    c_out, c_in = weight.shape[:2]
    return weight.permute(2, 3, 4, 1, 0).reshape(-1, c_in, c_out).contiguous()


def to_conv3d(weight: torch.Tensor, kernel_size) -> torch.Tensor:
    """(K, C_in, C_out) -> torch conv3d weight (C_out, C_in, Kx, Ky, Kz)."""
    k = tuple(kernel_size) if not isinstance(kernel_size, int) else (kernel_size,) * 3
    return weight.reshape(*k, weight.shape[1], weight.shape[2]).permute(4, 3, 0, 1, 2).contiguous()


def from_spconv(weight: torch.Tensor) -> torch.Tensor:
    """spconv 2.x weight (C_out, Kx, Ky, Kz, C_in) ("KRSC", indices (batch, x, y, z)) -> (K, C_in, C_out)."""
    c_out, c_in = weight.shape[0], weight.shape[-1]
    return weight.permute(1, 2, 3, 4, 0).reshape(-1, c_in, c_out).contiguous()


def to_spconv(weight: torch.Tensor, kernel_size) -> torch.Tensor:
    """(K, C_in, C_out) -> spconv 2.x weight (C_out, Kx, Ky, Kz, C_in)."""
    k = tuple(kernel_size) if not isinstance(kernel_size, int) else (kernel_size,) * 3
    return weight.reshape(*k, weight.shape[1], weight.shape[2]).permute(4, 0, 1, 2, 3).contiguous()
