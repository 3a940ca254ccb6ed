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
from fastperc.apps.texture import balanced_style_loss, default_layers, total_variation
from fastperc.functional import _validate

COLOURS = ("style", "content")
# ITU-R BT.601 (JPEG's YCbCr): luminance weights, and chroma as scaled differences from it.
LUMA = (0.299, 0.587, 0.114)
CB_SCALE, CR_SCALE = 1.772, 1.402


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luminance Y of (B, 3, H, W) RGB."""
    r, g, b = image.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def with_luminance(colour_source: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """RGB with luminance y and the chroma (Cb, Cr) of colour_source, clamped to [0, 1]."""
    r, g, b = colour_source.unbind(1)
    y0 = luminance(colour_source)[:, 0]
    cb, cr = (b - y0) / CB_SCALE, (r - y0) / CR_SCALE
    y = y[:, 0]
    r_out, b_out = y + CR_SCALE * cr, y + CB_SCALE * cb
    g_out = (y - LUMA[0] * r_out - LUMA[2] * b_out) / LUMA[1]
    return torch.stack([r_out, g_out, b_out], 1).clamp(0, 1)


def transfer_style(content: torch.Tensor, style: torch.Tensor, extractor, steps: int = 200,
                   content_weight: float = 1.0, style_weight: float = 10.0, tv_weight: float = 0.0,
                   content_layers=None, style_layers=None,
                   init: str = "content", optimizer: str = "lbfgs", lr: float | None = None, seed: int = 0,
                   progress=None, snapshot_every: int = 0, colour: str = "style"):
    """Returns (image, losses, snapshots) for content (1, 3, H, W) and style (1, 3, H', W') in [0, 1].
    Layers left None are the extractor's defaults (its content_layers and style_layers).

    colour="content" keeps the content's colours (Gatys et al. 2016, "Preserving colour in neural
    artistic style transfer", luminance-only transfer): the transfer runs on grey images, the style's
    luminance shifted and scaled to the content's mean and deviation, and the result's luminance is
    put back with the content's chroma (YCbCr). Snapshots stay grey.
    """
    _validate.choice(init, "init", ("content", "noise"))
    _validate.choice(colour, "colour", COLOURS)
    if colour == "content":
        luma_c, luma_s = luminance(content), luminance(style)
        luma_s = (luma_s - luma_s.mean()) / luma_s.std().clamp_min(1e-6) * luma_c.std() + luma_c.mean()
        grey, losses, snapshots = transfer_style(
            luma_c.expand_as(content).contiguous(), luma_s.clamp(0, 1).expand(-1, 3, -1, -1).contiguous(),
            extractor, steps, content_weight, style_weight, tv_weight, content_layers, style_layers, init,
            optimizer, lr, seed, progress, snapshot_every, "style")
        return with_luminance(content, luminance(grey)), losses, snapshots
    content_layers = default_layers(extractor, content_layers, "content_layers")
    style_layers = default_layers(extractor, style_layers, "style_layers")
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
