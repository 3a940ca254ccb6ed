"""Reference Gram ops, same signatures and semantics as torch.ops.fastperc.* (see csrc/op_schemas.h)."""
from __future__ import annotations

import torch


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def gram(x: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * x @ x^T for x (B, C, N), accumulated and returned in float32 (float64 for float64)."""
    xa = x.to(_acc(x.dtype))
    return torch.bmm(xa, xa.transpose(1, 2)) * scale


def gram_backward(grad: torch.Tensor, x: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * (grad + grad^T) @ x in x's dtype: the gradient of gram() with respect to x."""
    sym = (grad + grad.transpose(1, 2)) * scale
    return torch.bmm(sym, x.to(_acc(x.dtype))).to(x.dtype)


def style_loss(x: torch.Tensor, target: torch.Tensor, gram_scale: float, loss_scale: float):
    """(loss_scale * sum ||gram(x) - target||^2, residual); target is (1 or B, C, C)."""
    residual = gram(x, gram_scale) - target
    return residual.square().sum() * loss_scale, residual
