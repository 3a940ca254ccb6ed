"""SSIM-based loss modules: 1 - SSIM, 1 - MS-SSIM, and the 3DGS (1 - w) L1 + w (1 - SSIM)."""
from __future__ import annotations

import torch

from fastperc.functional.ssim import MS_SSIM_WEIGHTS, check_options, l1_ssim_loss, ms_ssim, ssim


class SSIMLoss(torch.nn.Module):
    """1 - SSIM(x, y) (mean, or per image with reduction="none"). Arguments as fastperc.ssim."""

    def __init__(self, data_range, reduction: str = "mean", **options):
        super().__init__()
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        self.data_range, self.reduction, self.options = data_range, reduction, options
        defaults = dict(win_size=11, sigma=1.5, window="gaussian", k1=0.01, k2=0.03, padding=None, preset=None)
        unknown = set(options) - set(defaults)
        if unknown:
            raise TypeError(f"unknown SSIM options {sorted(unknown)}")
        check_options(data_range, **{**defaults, **options})  # fail at construction, not at the first step

    def forward(self, x, y):
        return 1.0 - ssim(x, y, self.data_range, reduction=self.reduction, **self.options)


class MSSSIMLoss(torch.nn.Module):
    """1 - MS-SSIM(x, y). Arguments as fastperc.ms_ssim."""

    def __init__(self, data_range, weights=MS_SSIM_WEIGHTS, reduction: str = "mean", **options):
        super().__init__()
        self.data_range, self.weights, self.reduction, self.options = data_range, tuple(weights), reduction, options

    def forward(self, x, y):
        return 1.0 - ms_ssim(x, y, self.data_range, weights=self.weights, reduction=self.reduction, **self.options)


class L1SSIMLoss(torch.nn.Module):
    """(1 - ssim_weight) * L1 + ssim_weight * (1 - SSIM), the 3D Gaussian Splatting loss (weight 0.2,
    zero padding), computed in one fused kernel pass."""

    def __init__(self, data_range=1.0, ssim_weight: float = 0.2, **options):
        super().__init__()
        self.data_range, self.ssim_weight, self.options = data_range, ssim_weight, options

    def forward(self, x, y):
        return l1_ssim_loss(x, y, self.data_range, ssim_weight=self.ssim_weight, **self.options)
