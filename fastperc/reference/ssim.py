"""Reference SSIM ops, same signatures and semantics as torch.ops.fastperc.ssim / ssim_map (csrc/op_schemas.h).

Plain torch: pad, filter x, y, x^2 + y^2, xy separably with the 1-D window, form the map per pixel.
SSIM and CS take the two variances only as their sum, so x^2 + y^2 is one filtered map, and the clamp
that keeps rounding from making a variance negative applies to that sum (csrc/common/ssim_math.h).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PADDING = {0: "valid", 1: "zero", 2: "reflect"}


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _filter(t: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Valid separable correlation of t (N, 1, [D,] H, W) with the 1-D window along each spatial dim."""
    k = window.numel()
    spatial = t.dim() - 2
    conv = F.conv3d if spatial == 3 else F.conv2d
    for axis in range(spatial):
        shape = [1, 1] + [1] * spatial
        shape[2 + axis] = k
        t = conv(t, window.reshape(shape))
    return t


def _pad(t: torch.Tensor, r: int, padding: int) -> torch.Tensor:
    if padding == 0 or r == 0:
        return t
    pads = [r] * (2 * (t.dim() - 2))
    return F.pad(t, pads, mode="reflect") if padding == 2 else F.pad(t, pads)


def moments(x, y, window, padding):
    """E[x], E[y], E[x^2 + y^2], E[xy] over each window position, in the accumulation dtype."""
    acc = _acc(x.dtype)
    b, c = x.shape[:2]
    r = (window.numel() - 1) // 2
    xa, ya = x.to(acc), y.to(acc)
    stack = torch.stack([xa, ya, xa * xa + ya * ya, xa * ya]).reshape(4 * b * c, 1, *x.shape[2:])
    out = _filter(_pad(stack, r, padding), window.to(acc))
    return out.reshape(4, b, c, *out.shape[2:]).unbind(0)


def maps(x, y, window, c1, c2, padding):
    """(SSIM map, CS map)."""
    mx, my, esq, exy = moments(x, y, window, padding)
    mxy, msq = mx * my, mx * mx + my * my
    var = (esq - msq).clamp(min=0)  # sxx + syy
    sxy = exy - mxy
    cs = (2 * sxy + c2) / (var + c2)
    return (2 * mxy + c1) / (msq + c1) * cs, cs


def ssim(x, y, window, c1, c2, padding):
    """(B, C) means of the SSIM map, the CS map and |x - y|."""
    s, cs = maps(x, y, window, c1, c2, padding)
    acc = _acc(x.dtype)
    l1 = (x.to(acc) - y.to(acc)).abs()
    return s.flatten(2).mean(-1), cs.flatten(2).mean(-1), l1.flatten(2).mean(-1)


def ssim_map(x, y, window, c1, c2, padding):
    return maps(x, y, window, c1, c2, padding)[0]
