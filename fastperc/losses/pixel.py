"""Pixel losses with one signature: fn(x, y, reduction) (+ data_range for PSNR).

Each is first computed per image (over every dimension but the batch), then reduced over the batch:
reduction "none" -> (B,), "mean" -> mean over images, "sum" -> sum over images. For MAE and MSE
"mean" equals torch's l1_loss / mse_loss; "sum" differs from torch's element sum on purpose, so that
all four losses (and ssim, ms_ssim) reduce alike. PSNR averages the per-image dB values (as piq and
skimage per image do), not the dB of the batch MSE; identical images give +inf.
Half-precision inputs are accumulated in float32 and the result is float32.
"""
from __future__ import annotations

import math

import torch

from fastperc.functional import _validate

REDUCTIONS = ("mean", "sum", "none")


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x = _validate.float_tensor(x, "x")
    y = _validate.float_tensor(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    _validate.same_device(x, y, "x", "y")
    if x.dim() < 2:
        raise ValueError(f"x must be batched, (B, ...) with at least 2 dimensions, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"x must not be empty, got shape {tuple(x.shape)}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    return x, y


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "sum":
        return per_image.sum()
    return per_image


def mae(x, y, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error (L1) per image."""
    _validate.choice(reduction, "reduction", REDUCTIONS)
    x, y = _pair(x, y)
    return _reduce((x - y).abs().flatten(1).mean(1), reduction)


def mse(x, y, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error (L2) per image."""
    _validate.choice(reduction, "reduction", REDUCTIONS)
    x, y = _pair(x, y)
    return _reduce((x - y).square().flatten(1).mean(1), reduction)


def rmse(x, y, reduction: str = "mean") -> torch.Tensor:
    """Root mean squared error per image (the root is taken before the batch reduction)."""
    _validate.choice(reduction, "reduction", REDUCTIONS)
    x, y = _pair(x, y)
    return _reduce((x - y).square().flatten(1).mean(1).sqrt(), reduction)


def check_data_range(data_range) -> float:
    if not _validate.is_real(data_range):
        raise TypeError(f"data_range must be a number, got {type(data_range).__name__}")
    if not math.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be finite and > 0, got {data_range}")
    return float(data_range)


def psnr(x, y, data_range, reduction: str = "mean") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, 10 log10(data_range^2 / MSE).

    data_range is required (1.0 for images in [0, 1], 255 for 8-bit values): it is never guessed
    from the data.
    """
    _validate.choice(reduction, "reduction", REDUCTIONS)
    check_data_range(data_range)
    x, y = _pair(x, y)
    err = (x - y).square().flatten(1).mean(1)
    return _reduce(10.0 * torch.log10(data_range**2 / err), reduction)
