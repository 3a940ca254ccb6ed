"""Makes docs/shape_classes.png: every class of fastperc's procedural shape set (seed 2), rendered from
the 12 MVCNN cameras (azimuth 0, 30, ..., 330 degrees, elevation 30), one row per class.

    python docs/make_geometry_figures.py
"""
import os

import torch

from fastperc.geometry import CLASSES, make_shape
from fastperc.geometry.render import render
from fastperc.image import write_image

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    rows = [torch.cat(list(render(make_shape(name, 2), size=96)["image"]), 1) for name in CLASSES]
    path = os.path.join(HERE, "shape_classes.png")
    write_image(torch.cat(rows, 0)[None, None], path)
    print(f"wrote {path}: {', '.join(CLASSES)}")


if __name__ == "__main__":
    main()
