"""Pure-PyTorch implementations: the parity oracle of every kernel and the fallback without one."""
from fastperc.reference.gram import gram, gram_backward, style_loss
from fastperc.reference.ssim import ssim, ssim_map
from fastperc.reference import sparse

__all__ = ["gram", "gram_backward", "style_loss", "ssim", "ssim_map", "sparse"]
