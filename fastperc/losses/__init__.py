"""Loss family beyond the kernels: pixel losses, VGG perceptual and style losses, LPIPS."""
from fastperc.losses.pixel import mae, mse, psnr, rmse
from fastperc.losses.modules import MAELoss, MSELoss, PSNR, RMSELoss
from fastperc.losses.perceptual import PerceptualLoss, VGGStyleLoss
from fastperc.losses.lpips import LPIPS

l1 = mae  # the same loss under the name people search for

__all__ = ["mae", "l1", "mse", "rmse", "psnr", "MAELoss", "MSELoss", "RMSELoss", "PSNR",
           "PerceptualLoss", "VGGStyleLoss", "LPIPS"]
