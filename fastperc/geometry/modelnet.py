"""ModelNet10/40 as laid out by Princeton's archives: ROOT/<class>/{train,test}/<class>_NNNN.off."""
from __future__ import annotations

import os
import re

import torch

from fastperc.geometry.io import read_mesh

MODELNET10 = ("bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet")


class ModelNet(torch.utils.data.Dataset):
    """(Mesh normalised into the unit sphere, label) for every <class>_NNNN.off of the split. Classes are
    the folders of root in sorted order (or those given); files are in name order. Reading needs trimesh
    (`fastperc[3d]`)."""

    def __init__(self, root, split: str = "train", classes=None, normalize: bool = True):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{root}: no such folder (expected ModelNet10/40's <class>/{{train,test}}/*.off)")
        found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, split)))
        self.classes = tuple(found if classes is None else classes)
        missing = [c for c in self.classes if c not in found]
        if missing or not self.classes:
            raise ValueError(f"{root}: no {split} folder for classes {missing or '(none found)'}")
        self.files = []
        for label, name in enumerate(self.classes):
            folder = os.path.join(root, name, split)
            pattern = re.compile(rf"{re.escape(name)}_\d+\.off$", re.IGNORECASE)
            self.files += [(os.path.join(folder, f), label) for f in sorted(os.listdir(folder)) if pattern.match(f)]
        if not self.files:
            raise ValueError(f"{root}: no <class>_NNNN.off files in the {split} folders")
        self.split, self.normalize = split, normalize

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path, label = self.files[i]
        mesh = read_mesh(path)
        return (mesh.normalized() if self.normalize else mesh), label
