"""Gram matrices and the Gatys style loss.

Every style-loss convention in use is loss_scale * sum((gram_scale * F F^T - A)^2):

| convention                                  | normalize | reduction | value                              |
|---------------------------------------------|-----------|-----------|------------------------------------|
| pytorch/examples fast_neural_style          | "chw"     | "mean"    | mse(F F^T / (C H W), A)            |
| PyTorch style-transfer tutorial (batch 1)   | "chw"     | "mean"    | same                               |
| pystiche                                    | "hw"      | "mean"    | mse(F F^T / (H W), A)              |
| piq ContentLoss/StyleLoss (unnormalised)    | "none"    | "mean"    | mse(F F^T, A)                      |
| Gatys et al. 2016, E_l                      | "gatys"   | "sum"     | sum((F F^T - A)^2) / (4 C^2 (HW)^2) |
"""
from __future__ import annotations

import torch

from fastperc import _backend, reference
from fastperc.functional import _validate

GRAM_NORMALIZE = ("chw", "hw", "none")
STYLE_NORMALIZE = GRAM_NORMALIZE + ("gatys",)
REDUCTIONS = ("mean", "sum")


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """Gram matrices of float16/bfloat16/float32 features are float32; of float64 features, float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_features(x, name: str = "x") -> torch.Tensor:
    """(B, C, H, W) or (B, C, N) features as a (B, C, N) view (no copy, any strides)."""
    x = _validate.float_tensor(x, name)
    if x.dim() not in (3, 4):
        raise ValueError(f"{name} must be (B, C, H, W) or (B, C, N), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must have B, C and spatial size > 0, got shape {tuple(x.shape)}")
    return x.flatten(2) if x.dim() == 4 else x


def gram_scale(normalize: str, channels: int, positions: int) -> float:
    return {"chw": 1.0 / (channels * positions), "hw": 1.0 / positions, "none": 1.0, "gatys": 1.0}[normalize]


def gram_matrix(x: torch.Tensor, normalize: str = "chw") -> torch.Tensor:
    """Batched Gram matrix G_b = s * F_b F_b^T of features x, (B, C, H, W) or (B, C, N) -> (B, C, C).

    normalize: "chw" divides by C*H*W (pytorch/examples, the PyTorch tutorial), "hw" by H*W (pystiche),
    "none" not at all (piq, and Gatys et al. before their 1/(4 C^2 (HW)^2) loss factor).
    The result is float32 for float16/bfloat16/float32 features (half-precision sums of squares
    overflow) and float64 for float64 features.
    """
    _validate.choice(normalize, "normalize", GRAM_NORMALIZE)
    f = as_features(x)
    scale = gram_scale(normalize, f.shape[1], f.shape[2])
    if _backend.use_kernel("gram", f.device):
        return torch.ops.fastperc.gram(f, scale)
    return reference.gram(f, scale)


def _style_target(target_gram, f: torch.Tensor) -> torch.Tensor:
    target = _validate.tensor(target_gram, "target_gram")
    batch, channels = f.shape[0], f.shape[1]
    _validate.same_device(f, target, "x", "target_gram")
    want = accumulate_dtype(f.dtype)
    if target.dtype != want:
        raise TypeError(
            f"target_gram must be {want} for {f.dtype} features (as gram_matrix returns it), got {target.dtype}"
        )
    if target.dim() == 2:
        target = target.unsqueeze(0)
    if target.dim() != 3 or target.shape[0] not in (1, batch) or tuple(target.shape[1:]) != (channels, channels):
        raise ValueError(
            f"target_gram must be ({channels}, {channels}), (1, {channels}, {channels}) or "
            f"({batch}, {channels}, {channels}) for features of shape {tuple(f.shape)}, got {tuple(target_gram.shape)}"
        )
    return target


def style_scales(normalize: str, reduction: str, batch: int, channels: int, positions: int):
    """(gram_scale, loss_scale) of a convention; see the module docstring."""
    gs = gram_scale(normalize, channels, positions)
    if normalize == "gatys":
        ls = 1.0 / (4.0 * channels**2 * float(positions) ** 2)
        return gs, ls / batch if reduction == "mean" else ls
    return gs, 1.0 / (batch * channels * channels) if reduction == "mean" else 1.0


def style_loss(x: torch.Tensor, target_gram: torch.Tensor, normalize: str = "chw", reduction: str = "mean"):
    """Style loss between features x and a target Gram matrix, forward and backward fused.

    target_gram: (C, C), (1, C, C) (broadcast over the batch) or (B, C, C), in the dtype gram_matrix
    returns for x (float32, or float64 for float64 x). With reduction="mean" the loss is the mean
    squared difference of the Gram entries (MSE, as torch.nn.functional.mse_loss); with "sum" their
    sum. normalize="gatys" gives E_l of Gatys et al., averaged ("mean") or summed over the batch.
    The backward is one GEMM, (G - A) F, with no (B, C, C) autograd graph.
    """
    _validate.choice(normalize, "normalize", STYLE_NORMALIZE)
    _validate.choice(reduction, "reduction", REDUCTIONS)
    f = as_features(x)
    target = _style_target(target_gram, f)
    gs, ls = style_scales(normalize, reduction, f.shape[0], f.shape[1], f.shape[2])
    if _backend.use_kernel("style_loss", f.device):
        return torch.ops.fastperc.style_loss(f, target, gs, ls)[0]
    return reference.style_loss(f, target, gs, ls)[0]
