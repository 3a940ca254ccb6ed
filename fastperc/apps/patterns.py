"""Procedural pictures: inputs for the README figure, the examples and the tests, so that nothing
depends on a third-party image."""
from __future__ import annotations

import torch


def discs(size: int = 128, count: int = 40, seed: int = 3) -> torch.Tensor:
    """Coloured, dark-outlined discs on paper: (1, 3, size, size) in [0, 1], the same for a seed."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    img = torch.tensor([0.93, 0.88, 0.78]).view(3, 1, 1).expand(3, size, size).clone()
    scale = size / 128
    for _ in range(count):
        cy, cx = (torch.rand(2, generator=g) * size).tolist()
        r = (4 + torch.rand(1, generator=g).item() * 9) * scale
        colour = torch.rand(3, generator=g) * torch.tensor([0.9, 0.5, 0.4]) + torch.tensor([0.1, 0.2, 0.4])
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        inside = (d < r).float()
        img = img * (1 - inside) + colour.view(3, 1, 1) * inside
        ring = ((d - r).abs() < 1.2 * max(scale, 0.5)).float()
        img = img * (1 - ring) + 0.1 * ring
    return img[None]
