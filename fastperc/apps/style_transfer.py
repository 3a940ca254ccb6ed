"""Gatys et al. 2016 style transfer: an image with one image's content and another's style.

L = content_weight * sum_l ||F_l(x) - F_l(c)||^2 / ||F_l(c)||^2            (relu4_2)
  + style_weight   * sum_l E_l(x) / (L * E_l(noise))                         (relu1_1 ... relu5_1)
  + tv_weight      * total variation of x
E_l is the squared distance of the layer's Gram matrices, averaged over positions (fastperc.style_loss,
normalize="hw") so that style and content images may differ in size. Both terms are made relative
(the content error to the content's own energy, each style layer to its value for uniform noise of
the output's size), so the default weights work with any backbone weights, trained or random.
"""
from __future__ import annotations

import torch

from fastperc.apps.optimize import optimize_image
from fastperc.apps.texture import balanced_style_loss, total_variation
from fastperc.losses.perceptual import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS


def transfer_style(content: torch.Tensor, style: torch.Tensor, extractor, steps: int = 200,
                   content_weight: float = 1.0, style_weight: float = 10.0, tv_weight: float = 0.0,
                   content_layers=GATYS_CONTENT_LAYERS, style_layers=GATYS_STYLE_LAYERS,
                   init: str = "content", optimizer: str = "lbfgs", lr: float | None = None, seed: int = 0,
                   progress=None, snapshot_every: int = 0):
    """Returns (image, losses, snapshots) for content (1, 3, H, W) and style (1, 3, H', W') in [0, 1]."""
    if init not in ("content", "noise"):
        raise ValueError(f"init must be 'content' or 'noise', got {init!r}")
    content_layers, style_layers = tuple(content_layers), tuple(style_layers)
    layers = tuple(dict.fromkeys(content_layers + style_layers))
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(content.shape, generator=gen, dtype=content.dtype).to(content.device)
    image = content.clone() if init == "content" else noise.clone()
    with torch.no_grad():
        targets = extractor(content, content_layers)
        energy = {k: float(v.square().sum().clamp_min(1e-30)) for k, v in targets.items()}
        style_loss = balanced_style_loss(extractor(style, style_layers), extractor(noise, style_layers))

    def loss_fn(x):
        feats = extractor(x, layers)
        content_term = sum((feats[k] - targets[k]).square().sum() / energy[k] for k in content_layers)
        total = content_weight * content_term + style_weight * style_loss([feats[k] for k in style_layers])
        return total + tv_weight * total_variation(x) if tv_weight else total

    image.requires_grad_(True)
    losses, snapshots = optimize_image(image, loss_fn, steps, optimizer, lr, progress, snapshot_every)
    return image.detach(), losses, snapshots
