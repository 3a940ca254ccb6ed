"""A backbone built for texture statistics with no trained weights: one layer of random filters applied
at several scales (after Ustyuzhaninov, Brendel, Gatys and Bethge, "What does it take to generate
natural textures?", ICLR 2017: a single convolutional layer of random multi-scale filters with a ReLU
already gives textures close to those of a trained VGG).

Their largest filters are 55 x 55 at full resolution; here every scale uses small random filters on a
Gaussian image pyramid instead (binomial-blurred, halved per scale), which covers the same extents
(7 px at scale 0 ... 112 px at scale 4) at a fraction of the cost: 3.3 GFLOP per forward at 256 x 256
with the defaults (VGG19 up to relu5_1: 47 GFLOP); a synthesis step measured 2-3x faster than VGG19's.

Layers, each usable with the style losses and the extractor API of fastperc.models:
- "pixels": the normalised image and a constant channel (its Gram holds the mean colour and the colour
  second moments, so colour is matched directly rather than through random filter responses);
- "scale0" ... "scale{S-1}": ReLU of `width` zero-mean random filters (kernel x kernel x 3) on the
  image halved s times; zero-mean, so a filter answers to structure, not to local brightness.
White random filters answer pixel noise as strongly as structure, so a synthesis started from pixel
noise keeps speckle that matches their statistics; start from smooth noise (texture.start_image).
Smoothing the filters instead (tried: a [1 2 1] blur) took the fine detail away too (grass came out
blurred: spectrum distance 0.50 against 0.07).
Everything is drawn from a fixed seed: the same network on every machine and run.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from fastperc.models.extractor import NamedLayers

RANDOM_SEED = 0
BINOMIAL5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def half(x: torch.Tensor) -> torch.Tensor:
    """One level down a Gaussian pyramid: a 5-tap binomial blur (reflect padding), then every other
    pixel. A 2x2 box average instead sends each coarse gradient back as a flat 2^s block, and the
    synthesis then grows a grid of blocks."""
    tap = torch.tensor(BINOMIAL5, dtype=x.dtype, device=x.device) / 16
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    x = F.pad(x, (2, 2, 2, 2), mode=mode)
    x = F.conv2d(x, tap.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    x = F.conv2d(x, tap.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)
    return x[..., ::2, ::2]


class RandomMultiScale(NamedLayers):
    # Every layer carries texture statistics; content (style transfer) is kept by a coarse scale's
    # responses, which fix the layout and leave the finer scales to the style.
    content_layers = ("scale1",)

    @property
    def style_layers(self) -> tuple[str, ...]:
        return tuple(self.layer_names)

    def __init__(self, scales: int = 5, width: int = 128, kernel: int = 7, seed: int = RANDOM_SEED):
        super().__init__()
        if scales < 1 or width < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"scales and width must be >= 1 and kernel odd, got {scales}, {width}, {kernel}")
        self.what = "RandomMultiScale"
        self.pretrained = False
        self.kernel = kernel
        self.layer_names = ["pixels"] + [f"scale{s}" for s in range(scales)]
        gen = torch.Generator().manual_seed(seed)
        filters = torch.randn(scales, width, 3, kernel, kernel, generator=gen)
        filters = filters - filters.mean(dim=(3, 4), keepdim=True)  # per filter and channel: no DC response
        # unit norm per filter, so every scale's responses have the scale of its input's local contrast
        filters = filters / filters.flatten(2).norm(dim=2).view(scales, width, 1, 1, 1)
        self.register_buffer("filters", filters)
        self.eval()

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Features of images x (B, 3, H, W) in [0, 1] at the named layers, as a dict in the order asked for."""
        layers, wanted = self.requested(layers)
        x = self.checked_images(x, self.filters)
        # A constant channel beside the pixels: the Gram of (x, 1) holds the mean colour E[x] apart from
        # E[x x^T]; without it a grey image and a tinted one of other contrast can share their Gram.
        out = {"pixels": torch.cat([x, torch.ones_like(x[:, :1])], 1)}
        level = x
        pad = self.kernel // 2
        for s in range(1, max(wanted) + 1):
            if s > 1:
                if min(level.shape[-2:]) < 2:
                    raise ValueError(f"the image is too small for {self.what} at layer {self.layer_names[s]!r}: "
                                     f"{tuple(x.shape[-2:])} halved {s - 1} times")
                level = half(level)
            if s in wanted:
                # reflect padding: no dark frame at the border (zero padding is an edge every filter sees)
                mode = "reflect" if min(level.shape[-2:]) > pad else "replicate"
                out[self.layer_names[s]] = F.relu(F.conv2d(F.pad(level, (pad,) * 4, mode=mode), self.filters[s - 1]))
        return {name: out[name] for name in layers}

