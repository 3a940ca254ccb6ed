"""Makes docs/shape_classes.png: every class of fastperc's procedural shape set (seed 2), rendered from
the 12 MVCNN cameras (azimuth 0, 30, ..., 330 degrees, elevation 30), one row per class; and
docs/sdf_slices.png: the signed distance of four of them on the vertical plane through their centre
(blue inside, orange outside, a band every 0.1, the surface in black).

    python docs/make_geometry_figures.py
"""
import os

import torch

from fastperc.geometry import CLASSES, make_shape
from fastperc.geometry.sdf import mesh_sdf
from fastperc.geometry.render import render
from fastperc.image import write_image

HERE = os.path.dirname(os.path.abspath(__file__))


def sdf_slice(mesh, size=160):
    """RGB (3, size, size) picture of the SDF on the plane y = 0, x to the right and z up."""
    axis = torch.linspace(-1.05, 1.05, size, dtype=torch.float64)
    z, x = torch.meshgrid(-axis, axis, indexing="ij")
    d = mesh_sdf(mesh, torch.stack([x, torch.zeros_like(x), z], -1).reshape(-1, 3)).reshape(size, size)
    inside, outside = torch.tensor([0.25, 0.45, 0.85]), torch.tensor([0.95, 0.6, 0.25])
    colour = torch.where((d < 0)[..., None], inside, outside).permute(2, 0, 1)
    bands = 0.88 + 0.12 * torch.cos(d * (2 * torch.pi / 0.1)).float()
    surface = (d.abs() < 1.5 * 2.1 / size).float()
    return colour * bands * (1 - surface)


def main():
    rows = [torch.cat(list(render(make_shape(name, 2), size=96)["image"]), 1) for name in CLASSES]
    path = os.path.join(HERE, "shape_classes.png")
    write_image(torch.cat(rows, 0)[None, None], path)
    print(f"wrote {path}: {', '.join(CLASSES)}")
    names = ("chair", "table", "lamp", "torus")
    slices = [sdf_slice(make_shape(name, 2)) for name in names]
    gap = torch.ones(3, 160, 8)
    path = os.path.join(HERE, "sdf_slices.png")
    write_image(torch.cat([c for s in slices for c in (s, gap)][:-1], 2)[None], path)
    print(f"wrote {path}: {', '.join(names)}")


if __name__ == "__main__":
    main()
