"""The shape sets the 3D model commands (voxnet, mvcnn, deepsdf) train and test on, and their shared
bookkeeping."""
from __future__ import annotations

import os

import torch

from fastperc.geometry import ModelNet, ProceduralShapes


def load_split(data: str | None, split: str, per_class: int, classes=None):
    """(meshes, labels, class names) of the procedural set (data None) or of a ModelNet-layout folder."""
    if data is None:
        dataset = ProceduralShapes(split, per_class=per_class, classes=classes)
    else:
        if not os.path.isdir(data):
            raise FileNotFoundError(f"--data {data}: no such folder (ModelNet layout: <class>/{{train,test}}/*.off)")
        dataset = ModelNet(data, split, classes=classes)
    items = [dataset[i] for i in range(len(dataset))]
    return [m for m, _ in items], torch.tensor([c for _, c in items]), list(dataset.classes)


def load_run(args):
    """Seeds torch, makes args.out, and loads the training and test shapes of args.classes (comma-
    separated, or all): (train meshes, train labels, class names, test meshes, test labels)."""
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    classes = args.classes.split(",") if args.classes else None
    train_meshes, train_labels, names = load_split(args.data, "train", args.per_class, classes)
    test_meshes, test_labels, _ = load_split(args.data, "test", args.test_per_class, classes)
    return train_meshes, train_labels, names, test_meshes, test_labels


def confusion_counts(labels: torch.Tensor, predicted: torch.Tensor, classes: int) -> list:
    """counts[true][predicted] over every class, as nested lists (classes absent from the labels too)."""
    counts = torch.zeros((classes, classes), dtype=torch.long)
    counts.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    return counts.tolist()
