"""SSIM, MS-SSIM and the L1 + SSIM loss (Wang et al. 2004; Wang et al. 2003; Kerbl et al. 2023).

Conventions of the libraries people compare against, reproduced by `preset=`:

| preset                         | padding     | equals                                                      |
|--------------------------------|-------------|-------------------------------------------------------------|
| "wang" / "matlab"              | "valid"     | Wang et al.'s ssim_index.m (gaussian 11, sigma 1.5)         |
| "pytorch_msssim"               | "valid"     | pytorch_msssim.ssim / ms_ssim (pass its data_range: 255 is its default) |
| "skimage"                      | "valid"     | skimage structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False) |
| "fused_ssim" / "3dgs"          | "zero"      | fused-ssim and the 3D Gaussian Splatting code (data_range 1)  |
| "kornia"                       | "reflect"   | kornia.metrics.ssim (mean of its map)                        |
| "torchmetrics"                 | "reflect"   | torchmetrics StructuralSimilarityIndexMeasure (SSIM only)  |

Every convention uses the gaussian window 11 / sigma 1.5 and K1 = 0.01, K2 = 0.03 by default.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastperc import _backend, reference
from fastperc.functional import _validate

PADDINGS = {"valid": 0, "zero": 1, "reflect": 2}
PRESETS = {
    "wang": "valid",
    "matlab": "valid",
    "pytorch_msssim": "valid",
    "skimage": "valid",
    "fused_ssim": "zero",
    "3dgs": "zero",
    "kornia": "reflect",
    "torchmetrics": "reflect",
}
REDUCTIONS = ("mean", "none", "map")
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def window_1d(win_size: int, sigma: float, window: str, dtype: torch.dtype, device) -> torch.Tensor:
    """The normalised 1-D window: a sampled gaussian (taps at -r..r) or a box."""
    if window == "uniform":
        return torch.full((win_size,), 1.0 / win_size, dtype=dtype, device=device)
    coords = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2
    # (coords / sigma)^2 rather than coords^2 / sigma^2: sigma^2 underflows to 0 for sigma < ~1e-154,
    # which made the window 0/0 = NaN; this way a tiny sigma is the limit, a one-tap (identity) window.
    g = torch.exp(-0.5 * (coords / float(sigma)) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _accumulate(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_pair(x, y):
    x = _validate.float_tensor(x, "x")
    y = _validate.float_tensor(y, "y")
    if x.dim() not in (4, 5):
        raise ValueError(f"x must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}")
    if y.shape != x.shape:
        raise ValueError(f"y must have the shape of x {tuple(x.shape)}, got {tuple(y.shape)}")
    if y.dtype != x.dtype:
        raise TypeError(f"y must have the dtype of x ({x.dtype}), got {y.dtype}")
    _validate.same_device(x, y, "x", "y")
    if x.numel() == 0:
        raise ValueError(f"x and y must not be empty, got shape {tuple(x.shape)} (B = 0 has no SSIM)")
    return x, y


def check_options(data_range, win_size, sigma, window, k1, k2, padding, preset) -> str:
    """Validates the scalar SSIM options and returns the padding they select (a preset's, or "valid")."""
    if not _validate.is_real(data_range) or not math.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a finite number > 0 (e.g. 1.0 or 255), got {data_range!r}")
    if not _validate.is_integer(win_size) or win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd integer >= 1, got {win_size!r}")
    _validate.choice(window, "window", ("gaussian", "uniform"))
    if window == "gaussian" and not (_validate.is_real(sigma) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    for name, k in (("k1", k1), ("k2", k2)):
        if not (_validate.is_real(k) and math.isfinite(k) and k > 0):
            raise ValueError(f"{name} must be > 0, got {k!r}")
    if preset is not None:
        _validate.choice(preset, "preset", tuple(PRESETS))
        if padding is not None and padding != PRESETS[preset]:
            raise ValueError(f"preset {preset!r} uses padding={PRESETS[preset]!r}, got padding={padding!r}")
        padding = PRESETS[preset]
    return _validate.choice(padding or "valid", "padding", tuple(PADDINGS))


def _options(x, data_range, win_size, sigma, window, k1, k2, padding, preset):
    padding = check_options(data_range, win_size, sigma, window, k1, k2, padding, preset)
    spatial = tuple(x.shape[2:])
    if padding == "valid" and min(spatial) < win_size:
        raise ValueError(f"with padding='valid' every spatial size {spatial} must be >= win_size={win_size}")
    if padding == "reflect" and min(spatial) <= (win_size - 1) // 2:
        raise ValueError(f"padding='reflect' needs every spatial size {spatial} > {(win_size - 1) // 2}")
    w = window_1d(int(win_size), sigma, window, _accumulate(x.dtype), x.device)
    data_range, k1, k2 = float(data_range), float(k1), float(k2)  # NumPy scalars become Python floats
    return w, (k1 * data_range) ** 2, (k2 * data_range) ** 2, PADDINGS[padding]


def ssim_terms(x, y, w, c1, c2, padding):
    """(B, C) means of SSIM, CS and |x - y| from the kernel, or the reference where there is none."""
    if _backend.use_kernel("ssim", x.device):
        return torch.ops.fastperc.ssim(x, y, w, c1, c2, padding)
    return reference.ssim(x, y, w, c1, c2, padding)


def ssim(x, y, data_range, win_size: int = 11, sigma: float = 1.5, window: str = "gaussian", k1: float = 0.01,
         k2: float = 0.03, padding: str | None = None, reduction: str = "mean", preset: str | None = None):
    """Structural similarity of x and y, (B, C, H, W) images or (B, C, D, H, W) volumes.

    data_range is required (the span of the values: 1.0 for [0, 1] images, 255 for 8-bit): it is never
    inferred from the data. padding: "valid" (default; the Wang et al. reference), "zero" or "reflect"
    ("same"-size maps), or a `preset` (see the module table). reduction: "mean" -> scalar, "none" -> (B,)
    (mean over channels and pixels), "map" -> the SSIM map. float16/bfloat16 inputs are computed in float32
    and the result is float32 (float64 stays float64).
    """
    x, y = _check_pair(x, y)
    _validate.choice(reduction, "reduction", REDUCTIONS)
    w, c1, c2, pad = _options(x, data_range, win_size, sigma, window, k1, k2, padding, preset)
    if reduction == "map":
        if _backend.use_kernel("ssim_map", x.device):
            return torch.ops.fastperc.ssim_map(x, y, w, c1, c2, pad)
        return reference.ssim_map(x, y, w, c1, c2, pad)
    s = ssim_terms(x, y, w, c1, c2, pad)[0]
    return s.mean() if reduction == "mean" else s.mean(1)


def _positive_power(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """prod_j max(v_j, 0) ** w_j with a zero (not NaN) gradient where v_j <= 0."""
    positive = values > 0
    safe = torch.where(positive, values, torch.ones_like(values))
    terms = torch.where(positive, safe ** weights, torch.zeros_like(values))
    return terms.prod(0)


class _HalfPool(torch.autograd.Function):
    """2 x 2 (x 2) average pooling with stride 2 and `odd` leading zeros per spatial side, as
    avg_pool2d/3d(kernel_size=2, padding=odd) computes it where it matters (the trailing padding is
    never read and zeros count in the mean): neighbours added with strided adds, and the backward one
    expand. torch's CPU avg_pool2d loops per output element: 1.1 ms forward and 3.3 ms forward +
    backward at 1x3x512x512 on a Zen 4 against 0.2 and ~1 ms here, 16 % of MS-SSIM's forward +
    backward. Its backward is made of differentiable ops, so double backward works."""

    @staticmethod
    def forward(ctx, x, odd):
        ctx.odd, ctx.size = odd, x.shape[2:]
        pad = [p for o in reversed(odd) for p in (o, 0)]
        x = F.pad(x, pad) if any(odd) else x
        for d in range(2, x.dim()):
            pairs = x.unflatten(d, (x.shape[d] // 2, 2))
            x = pairs.select(d + 1, 0) + pairs.select(d + 1, 1)
        return x * 0.5 ** len(odd)

    @staticmethod
    def backward(ctx, grad):
        g = grad * 0.5 ** len(ctx.odd)
        for d in range(2, g.dim()):
            g = g.unsqueeze(d + 1).expand(*g.shape[:d + 1], 2, *g.shape[d + 1:]).flatten(d, d + 1)
            g = g.narrow(d, ctx.odd[d - 2], ctx.size[d - 2])
        return g, None


def half_pool(x: torch.Tensor, odd: list) -> torch.Tensor:
    """MS-SSIM's downsampling: avg_pool{2,3}d(x, kernel_size=2, padding=odd), faster on the CPU.
    float16/bfloat16 images are pooled in float32 and stay float32 (the SSIM kernels accumulate in
    float32 anyway): adding them in their own precision would round three times."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return _HalfPool.apply(x, tuple(odd))


def ms_ssim(x, y, data_range, win_size: int = 11, sigma: float = 1.5, window: str = "gaussian", k1: float = 0.01,
            k2: float = 0.03, weights=MS_SSIM_WEIGHTS, padding: str | None = None, reduction: str = "mean",
            preset: str | None = None):
    """Multi-scale SSIM (Wang et al. 2003): prod_j cs_j^w_j * ssim_M^w_M over len(weights) scales with 2x2
    average pooling between them (odd sizes padded as pytorch-msssim does).

    Negative contrast-structure or SSIM terms are clamped at 0 before the fractional power (as
    pytorch-msssim's relu), and their gradient is 0 there instead of NaN.
    """
    x, y = _check_pair(x, y)
    _validate.choice(reduction, "reduction", ("mean", "none"))
    weights = torch.as_tensor(weights, dtype=_accumulate(x.dtype), device=x.device)
    if weights.dim() != 1 or weights.numel() < 1:
        raise ValueError("weights must be a non-empty 1-D sequence")
    # Exponents of the per-scale terms: NaN or inf would make MS-SSIM NaN, a negative one turns a
    # clamped zero term into inf.
    if not torch.compiler.is_compiling() and not (torch.isfinite(weights).all() and (weights >= 0).all()):
        raise ValueError(f"weights must be finite and >= 0, got {weights.tolist()}")
    levels = weights.numel()
    smallest = min(x.shape[2:])
    pad_name = check_options(data_range, win_size, sigma, window, k1, k2, padding, preset)
    needed = (win_size - 1) * 2 ** (levels - 1) if pad_name == "valid" else 2 ** (levels - 1)
    if smallest <= needed:
        raise ValueError(
            f"ms_ssim with {levels} scales and win_size={win_size} needs the smallest spatial side > {needed}, "
            f"got {smallest}; use fewer weights or a smaller window"
        )
    w, c1, c2, pad = _options(x, data_range, win_size, sigma, window, k1, k2, padding, preset)
    cs_terms = []
    for level in range(levels):
        s, cs, _ = ssim_terms(x, y, w, c1, c2, pad)
        if level < levels - 1:
            cs_terms.append(cs)
            odd = [size % 2 for size in x.shape[2:]]
            x, y = half_pool(x, odd), half_pool(y, odd)
    values = torch.stack(cs_terms + [s])  # (levels, B, C)
    per_channel = _positive_power(values, weights.reshape(-1, 1, 1))
    return per_channel.mean() if reduction == "mean" else per_channel.mean(1)


def l1_ssim_loss(x, y, data_range=1.0, ssim_weight: float = 0.2, win_size: int = 11, sigma: float = 1.5,
                 window: str = "gaussian", k1: float = 0.01, k2: float = 0.03, padding: str | None = "zero",
                 preset: str | None = None):
    """The 3D Gaussian Splatting photometric loss (1 - w) * L1 + w * (1 - SSIM), w = 0.2, from one fused
    kernel pass (forward and backward). Zero "same" padding by default, as in the 3DGS code."""
    x, y = _check_pair(x, y)
    if not (_validate.is_real(ssim_weight) and 0.0 <= ssim_weight <= 1.0):
        raise ValueError(f"ssim_weight must be in [0, 1], got {ssim_weight!r}")
    w, c1, c2, pad = _options(x, data_range, win_size, sigma, window, k1, k2, padding if preset is None else None,
                              preset)
    s, _, l1 = ssim_terms(x, y, w, c1, c2, pad)
    return (1.0 - ssim_weight) * l1.mean() + ssim_weight * (1.0 - s.mean())
