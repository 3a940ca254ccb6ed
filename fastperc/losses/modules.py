"""Module forms of the pixel losses (see fastperc.losses.pixel for the conventions)."""
from __future__ import annotations

import torch

from fastperc.functional import _validate
from fastperc.losses import pixel


class _PixelLoss(torch.nn.Module):
    fn = None

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _validate.choice(reduction, "reduction", pixel.REDUCTIONS)

    def forward(self, x, y):
        return type(self).fn(x, y, self.reduction)


class MAELoss(_PixelLoss):
    fn = staticmethod(pixel.mae)


class MSELoss(_PixelLoss):
    fn = staticmethod(pixel.mse)


class RMSELoss(_PixelLoss):
    fn = staticmethod(pixel.rmse)


class PSNR(torch.nn.Module):
    def __init__(self, data_range, reduction: str = "mean"):
        super().__init__()
        self.reduction = _validate.choice(reduction, "reduction", pixel.REDUCTIONS)
        self.data_range = pixel.check_data_range(data_range)

    def forward(self, x, y):
        return pixel.psnr(x, y, self.data_range, self.reduction)
