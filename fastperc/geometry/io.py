"""Mesh files: OFF (ModelNet's format), OBJ and PLY read through trimesh (the optional extra
`fastperc[3d]`), and OFF written by fastperc (for tests and exports; no dependency).

trimesh already copes with what ModelNet's files do: counts on the header line (`OFF490 518 0`) and
quads (split into two triangles). The mesh is read as stored (process=False: no vertex merging or
reordering), as float64.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from fastperc.geometry.mesh import Mesh

FORMATS = (".off", ".obj", ".ply", ".stl")


def _trimesh():
    try:
        import trimesh
    except ImportError:
        raise ImportError("reading mesh files needs trimesh: pip install 'fastperc[3d]' (or pip install trimesh)") from None
    return trimesh


def read_mesh(path) -> Mesh:
    """The triangles of an .off, .obj, .ply or .stl file (a scene of several meshes is merged)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"{path}: unknown mesh format {ext!r}; fastperc reads {', '.join(FORMATS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    trimesh = _trimesh()
    try:
        loaded = trimesh.load(path, file_type=ext[1:], process=False, force="mesh")
    except Exception as err:  # trimesh raises many types for a damaged file
        raise ValueError(f"{path}: not a readable {ext[1:].upper()} mesh ({type(err).__name__}: {err})") from None
    faces = np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        raise ValueError(f"{path}: the file holds no triangles")
    return Mesh(torch.from_numpy(np.asarray(loaded.vertices, dtype=np.float64).copy()), torch.from_numpy(faces.copy()))


def write_off(mesh: Mesh, path, header_counts_inline: bool = False) -> None:
    """mesh as an OFF file. header_counts_inline writes ModelNet's broken header (`OFF8 12 0`)."""
    v = mesh.vertices.detach().double().cpu().tolist()
    f = mesh.faces.cpu().tolist()
    counts = f"{len(v)} {len(f)} 0"
    lines = [f"OFF{counts}"] if header_counts_inline else ["OFF", counts]
    lines += [" ".join(repr(c) for c in p) for p in v]
    lines += ["3 " + " ".join(str(i) for i in face) for face in f]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
