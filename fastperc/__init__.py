"""fastperc: hand-written C++/CUDA kernels for perceptual losses, with pure-PyTorch fallbacks."""
from __future__ import annotations

__version__ = "0.1.0"

from fastperc import _backend

if _backend.extension_loaded():
    from fastperc import ops as _ops  # noqa: F401  (fake kernels and autograd of torch.ops.fastperc)

from fastperc.functional import (chamfer_distance, gram_matrix, knn_points, l1_ssim_loss, ms_ssim, ssim,  # noqa: E402
                                 style_loss)
from fastperc.nn import L1SSIMLoss, MSSSIMLoss, SSIMLoss, StyleLoss  # noqa: E402
from fastperc._info import info  # noqa: E402
from fastperc import data, distributed, sparse  # noqa: E402
from fastperc import losses, models  # noqa: E402

__all__ = [
    "gram_matrix", "style_loss", "StyleLoss",
    "ssim", "ms_ssim", "l1_ssim_loss", "SSIMLoss", "MSSSIMLoss", "L1SSIMLoss",
    "knn_points", "chamfer_distance",
    "sparse", "losses", "models", "distributed", "info", "__version__",
]
