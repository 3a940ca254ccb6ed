"""Weight layout converters. fastperc: (K, C_in, C_out), offset k = (kx * Ky + ky) * Kz + kz, where
x, y, z are the coordinate columns 1, 2, 3 (after batch) and the convolution reads input site
o * stride - padding + (kx, ky, kz) * dilation, exactly as torch's conv3d on a (B, C, X, Y, Z) grid.
"""
from __future__ import annotations

import math

import torch


def _sizes(kernel_size):
    return tuple(kernel_size) if not isinstance(kernel_size, int) else (kernel_size,) * 3


def _check_volume(weight: torch.Tensor, sizes) -> None:
    if weight.dim() != 3 or weight.shape[0] != math.prod(sizes):
        raise ValueError(f"weight must be (K={math.prod(sizes)}, C_in, C_out) for kernel {tuple(sizes)}, "
                         f"got {tuple(weight.shape)}")


def _x_fastest_to_ours(weight: torch.Tensor, kernel_size) -> torch.Tensor:
    kx, ky, kz = _sizes(kernel_size)
    _check_volume(weight, (kx, ky, kz))
    # x-fastest index k = kx + Kx (ky + Ky kz): row-major over (kz, ky, kx).
    return weight.reshape(kz, ky, kx, *weight.shape[1:]).permute(2, 1, 0, 3, 4).reshape(weight.shape).contiguous()


def _ours_to_x_fastest(weight: torch.Tensor, kernel_size) -> torch.Tensor:
    kx, ky, kz = _sizes(kernel_size)
    _check_volume(weight, (kx, ky, kz))
    return weight.reshape(kx, ky, kz, *weight.shape[1:]).permute(2, 1, 0, 3, 4).reshape(weight.shape).contiguous()


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


# MinkowskiEngine: kernel (K, C_in, C_out); HYPER_CUBE offset k = kx + Kx (ky + Ky kz) (x fastest), the
# offset along an axis being (k - K // 2) * dilation for odd K and k * dilation for even K. With that
# geometry (odd K: padding = (K // 2) * dilation; ME's strided output = fastperc's out_coords="floor")
# the converted weights give the same convolution.


def from_minkowski(weight: torch.Tensor, kernel_size) -> torch.Tensor:
    """MinkowskiEngine MinkowskiConvolution.kernel (K, C_in, C_out), x-fastest offsets -> fastperc."""
    return _x_fastest_to_ours(weight, kernel_size)


def to_minkowski(weight: torch.Tensor, kernel_size) -> torch.Tensor:
    """fastperc (K, C_in, C_out) -> MinkowskiEngine kernel (K, C_in, C_out), x-fastest offsets."""
    return _ours_to_x_fastest(weight, kernel_size)


# TorchSparse (1.x, 2.x; torchsparse.nn.utils.get_kernel_offsets): kernel (K, C_in, C_out), or
# (C_in, C_out) when K = 1; per axis the offsets run upwards from -((K - 1) // 2); x fastest when the
# kernel volume is odd (their MinkowskiEngine compatibility), z fastest (fastperc's order) when it is
# even.


def from_torchsparse(weight: torch.Tensor, kernel_size) -> torch.Tensor:
    """TorchSparse Conv3d.kernel -> fastperc (K, C_in, C_out)."""
    sizes = _sizes(kernel_size)
    if weight.dim() == 2 and math.prod(sizes) == 1:
        return weight.unsqueeze(0).contiguous()
    if math.prod(sizes) % 2 == 1:
        return _x_fastest_to_ours(weight, sizes)
    _check_volume(weight, sizes)
    return weight.contiguous()


def to_torchsparse(weight: torch.Tensor, kernel_size) -> torch.Tensor:
    """fastperc (K, C_in, C_out) -> TorchSparse Conv3d.kernel ((C_in, C_out) when K = 1)."""
    sizes = _sizes(kernel_size)
    if math.prod(sizes) == 1:
        return weight.reshape(weight.shape[-2:]).contiguous()
    if math.prod(sizes) % 2 == 1:
        return _ours_to_x_fastest(weight, sizes)
    _check_volume(weight, sizes)
    return weight.contiguous()
