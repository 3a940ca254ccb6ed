"""Loss modules and layers."""
from fastperc.nn.ssim import L1SSIMLoss, MSSSIMLoss, SSIMLoss
from fastperc.nn.style import StyleLoss

__all__ = ["StyleLoss", "SSIMLoss", "MSSSIMLoss", "L1SSIMLoss"]
