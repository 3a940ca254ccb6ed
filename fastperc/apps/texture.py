"""Gatys et al. 2015 texture synthesis: noise optimised until its VGG Gram matrices match a texture's."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastperc.apps.optimize import optimize_image
from fastperc.functional import _validate
from fastperc.nn.style import StyleLoss


def default_layers(extractor, layers, kind: str) -> tuple[str, ...]:
    """layers as a tuple, or the extractor's own default (its `style_layers` / `content_layers`)."""
    if layers is not None:
        return tuple(layers)
    if not hasattr(extractor, kind):
        raise ValueError(f"{type(extractor).__name__} has no default {kind}: name the layers")
    return tuple(getattr(extractor, kind))


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, mean |x[i+1] - x[i]| over both image axes."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def balanced_style_loss(style_features: dict, noise_features: dict) -> StyleLoss:
    """sum_l E_l(x) / (L * E_l(noise)), E_l the squared distance of Gram matrices per layer, each
    divided by its value for uniform noise: every scale counts alike and noise scores 1 whatever the
    backbone's weights (with random filters the first layer's raw E_l is ~1000x the last one's).

    The Grams are averages over positions (normalize="hw"), not the paper's sums: the style image
    and the output may differ in size, and summed Grams would then differ by the ratio of their areas.
    """
    layers = list(style_features)
    at_noise = [StyleLoss([style_features[k]], None, "hw", "sum")([noise_features[k]]).item() for k in layers]
    if min(at_noise) <= 0.0:
        raise ValueError("the style image has the statistics of uniform noise at some layer; nothing to imitate")
    weights = [1.0 / (len(layers) * e) for e in at_noise]
    return StyleLoss([style_features[k] for k in layers], weights, "hw", "sum")


STARTS = ("smooth", "noise")
SMOOTH_START_FACTOR = 8


def start_image(size: tuple[int, int], start: str, seed: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """The (1, 3, *size) image a synthesis starts from, from `seed`: "noise" is uniform noise per pixel
    (Gatys et al.); "smooth" is uniform noise at 1/8 of the size, bilinearly upsampled. Pixel noise
    holds speckle that random filters do not see as wrong (it matches their statistics), so it stays;
    from a smooth start the optimisation adds only the fine detail the exemplar's statistics ask for."""
    _validate.choice(start, "start", STARTS)
    gen = torch.Generator().manual_seed(seed)
    if start == "noise":
        return torch.rand(1, 3, *size, generator=gen, dtype=dtype).to(device)
    coarse = torch.rand(1, 3, *(max(1, -(-n // SMOOTH_START_FACTOR)) for n in size), generator=gen, dtype=dtype)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False).to(device)


def synthesize_texture(style: torch.Tensor, extractor, size: tuple[int, int], steps: int = 200,
                       layers=None, optimizer: str = "lbfgs", lr: float | None = None,
                       seed: int = 0, progress=None, snapshot_every: int = 0, tv_weight: float = 0.0,
                       start: str = "smooth"):
    """A (1, 3, *size) texture with the style statistics of `style` (1, 3, H, W) in [0, 1].

    The start is start_image(size, start, seed), which balanced_style_loss is also normalised with.
    tv_weight adds total variation (mean absolute neighbour difference), which smooths away pixel
    noise. layers: the extractor's style_layers when None. Returns (image, losses, snapshots); see
    optimize_image.
    """
    layers = default_layers(extractor, layers, "style_layers")
    image = start_image(size, start, seed, style.dtype, style.device)
    with torch.no_grad():
        loss = balanced_style_loss(extractor(style, layers), extractor(image, layers))
    image.requires_grad_(True)

    def loss_fn(x):
        total = loss(list(extractor(x, layers).values()))
        return total + tv_weight * total_variation(x) if tv_weight else total

    losses, snapshots = optimize_image(image, loss_fn, steps, optimizer, lr, progress, snapshot_every)
    return image.detach(), losses, snapshots
