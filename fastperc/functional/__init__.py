"""Functional API: losses and ops on tensors."""
from fastperc.functional.chamfer import chamfer_distance, knn_points
from fastperc.functional.gram import gram_matrix, style_loss
from fastperc.functional.ssim import l1_ssim_loss, ms_ssim, ssim

__all__ = ["gram_matrix", "style_loss", "ssim", "ms_ssim", "l1_ssim_loss", "knn_points", "chamfer_distance"]
