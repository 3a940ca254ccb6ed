"""Writes the README's example texture (coloured, outlined discs on paper): a picture anyone can
regenerate, so that the README figure needs no third-party image.

    python docs/make_example_style.py docs/discs.png
"""
import sys

import torch

from fastperc.image import write_image


def discs(size=128, count=40, seed=3):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    img = torch.tensor([0.93, 0.88, 0.78]).view(3, 1, 1).expand(3, size, size).clone()
    for _ in range(count):
        cy, cx = (torch.rand(2, generator=g) * size).tolist()
        r = 4 + torch.rand(1, generator=g).item() * 9
        colour = torch.rand(3, generator=g) * torch.tensor([0.9, 0.5, 0.4]) + torch.tensor([0.1, 0.2, 0.4])
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        inside = (d < r).float()
        img = img * (1 - inside) + colour.view(3, 1, 1) * inside
        ring = ((d - r).abs() < 1.2).float()
        img = img * (1 - ring) + 0.1 * ring
    return img


if __name__ == "__main__":
    write_image(discs(), sys.argv[1] if len(sys.argv) > 1 else "discs.png")
