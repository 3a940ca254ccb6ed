"""Procedural shapes: closed triangle meshes of primitives and composed objects, and a deterministic
dataset of them in random pose, scale and aspect (the offline stand-in for ModelNet).

Every mesh is upright along +Z, closed (watertight, outward normals) and made of parts that touch but
never overlap, so ray parity gives its inside.
"""
from __future__ import annotations

import math

import torch

from fastperc.geometry.mesh import Mesh, rotation_x, rotation_z

SEGMENTS = 24  # around the up axis


def revolve(profile, segments: int = SEGMENTS, closed: bool = False) -> Mesh:
    """The surface swept by a profile of (r, z) points turned about +Z. Points with r = 0 become poles.
    The profile runs from bottom to top on the outside (so the normals point out); closed joins its
    last point to its first (a torus' circle)."""
    profile = [(float(r), float(z)) for r, z in profile]
    angles = torch.arange(segments, dtype=torch.float64) * (2 * math.pi / segments)
    vertices, rings = [], []  # rings[k]: index of the pole, or of the first of the ring's vertices
    for r, z in profile:
        rings.append(sum(len(v) for v in vertices))
        if r == 0:
            vertices.append(torch.tensor([[0.0, 0.0, z]], dtype=torch.float64))
        else:
            vertices.append(torch.stack([r * angles.cos(), r * angles.sin(), torch.full_like(angles, z)], 1))
    faces = []
    j = torch.arange(segments)
    nxt = (j + 1) % segments
    pairs = list(zip(range(len(profile) - 1), range(1, len(profile))))
    if closed:
        pairs.append((len(profile) - 1, 0))
    for a, b in pairs:
        ra, rb = profile[a][0], profile[b][0]
        ia, ib = rings[a], rings[b]
        if ra == 0 and rb == 0:
            continue
        if ra == 0:  # fan from the bottom pole
            faces.append(torch.stack([torch.full_like(j, ia), ib + nxt, ib + j], 1))
        elif rb == 0:  # fan to the top pole
            faces.append(torch.stack([ia + j, ia + nxt, torch.full_like(j, ib)], 1))
        else:
            faces.append(torch.stack([ia + j, ia + nxt, ib + nxt], 1))
            faces.append(torch.stack([ia + j, ib + nxt, ib + j], 1))
    return Mesh(torch.cat(vertices), torch.cat(faces))


def box(size=(1.0, 1.0, 1.0), centre=(0.0, 0.0, 0.0)) -> Mesh:
    """An axis-aligned box of the given edge lengths."""
    corners = torch.tensor([[x, y, z] for z in (-0.5, 0.5) for y in (-0.5, 0.5) for x in (-0.5, 0.5)],
                           dtype=torch.float64)
    faces = torch.tensor([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6],  # bottom (-z), top (+z)
                          [0, 1, 4], [1, 5, 4], [2, 6, 3], [3, 6, 7],  # -y, +y
                          [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]])  # -x, +x
    return Mesh(corners * torch.tensor(size, dtype=torch.float64) + torch.tensor(centre, dtype=torch.float64), faces)


def sphere(radius=1.0, rings: int = 12, segments: int = SEGMENTS) -> Mesh:
    t = torch.linspace(-math.pi / 2, math.pi / 2, rings + 1, dtype=torch.float64)
    return revolve([(0.0 if k in (0, rings) else radius * math.cos(a), radius * math.sin(a))
                    for k, a in enumerate(t.tolist())], segments)


def cylinder(radius=0.5, height=1.0, z0=None) -> Mesh:
    z0 = -height / 2 if z0 is None else z0
    return revolve([(0, z0), (radius, z0), (radius, z0 + height), (0, z0 + height)])


def cone(radius=0.5, height=1.0, top_radius=0.0, z0=None) -> Mesh:
    """A cone (or with top_radius > 0 a frustum) standing on its base."""
    z0 = -height / 2 if z0 is None else z0
    return revolve([(0, z0), (radius, z0), (top_radius, z0 + height)] + ([(0, z0 + height)] if top_radius else []))


def torus(major=0.7, minor=0.25, steps: int = 12) -> Mesh:
    t = torch.arange(steps, dtype=torch.float64) * (2 * math.pi / steps)
    # Counter-clockwise in the (r, z) half-plane, as every profile here: outward normals.
    return revolve([(major + minor * math.cos(a), minor * math.sin(a)) for a in t.tolist()], closed=True)


def capsule(radius=0.4, length=1.0, rings: int = 6) -> Mesh:
    """A cylinder of the given length between two hemispheres."""
    half = length / 2
    lower = [(radius * math.cos(a), -half + radius * math.sin(a))
             for a in torch.linspace(-math.pi / 2, 0, rings + 1, dtype=torch.float64).tolist()]
    upper = [(radius * math.cos(a), half + radius * math.sin(a))
             for a in torch.linspace(0, math.pi / 2, rings + 1, dtype=torch.float64).tolist()]
    profile = [(0.0, z) if k == 0 else (r, z) for k, (r, z) in enumerate(lower)] + upper
    profile[-1] = (0.0, profile[-1][1])
    return revolve(profile)


def pyramid(base=1.0, height=1.0) -> Mesh:
    h = height / 2
    v = torch.tensor([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 0]], dtype=torch.float64)
    v[:, :2] *= base
    v[:4, 2], v[4, 2] = -h, h
    faces = torch.tensor([[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    return Mesh(v, faces)


def ellipsoid(axes=(1.0, 0.7, 0.5)) -> Mesh:
    return sphere(1.0).transformed(scale=axes)


def table(width=1.6, depth=1.0, height=1.0, top=0.1, leg=0.1) -> Mesh:
    """A top on four legs that touch its underside (parts touch, never overlap)."""
    legs = height - top
    parts = [box((width, depth, top), (0, 0, legs + top / 2))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(box((leg, leg, legs), (sx * (width - leg) / 2, sy * (depth - leg) / 2, legs / 2)))
    return Mesh.merge(parts)


def chair(width=0.9, depth=0.9, seat_height=0.8, back=0.9, thickness=0.1, leg=0.08) -> Mesh:
    """A table-like seat with a back standing on the seat's rear edge."""
    seat = table(width, depth, seat_height, thickness, leg)
    backrest = box((width, thickness, back), (0, (depth - thickness) / 2, seat_height + back / 2))
    return Mesh.merge([seat, backrest])


def lamp(base_radius=0.4, base_height=0.08, pole_radius=0.05, pole_height=1.2, shade_radius=0.5,
         shade_top=0.25, shade_height=0.45) -> Mesh:
    """A disc base, a pole on it and a truncated-cone shade on the pole."""
    base = cylinder(base_radius, base_height, z0=0.0)
    pole = cylinder(pole_radius, pole_height, z0=base_height)
    shade = cone(shade_radius, shade_height, shade_top, z0=base_height + pole_height)
    return Mesh.merge([base, pole, shade])


def _uniform(g, lo, hi) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


# Each class: a maker of its canonical mesh with random proportions. The classes pair up so that one
# view can mislead (cylinder, capsule and sphere from above; box and pyramid from below; table and
# chair from the front; cone and lamp from the side).
CLASSES = {
    "sphere": lambda g: sphere(1.0),
    "ellipsoid": lambda g: ellipsoid((1.0, _uniform(g, 0.45, 0.8), _uniform(g, 0.3, 0.6))),
    "box": lambda g: box((1.0, _uniform(g, 0.4, 1.0), _uniform(g, 0.3, 1.0))),
    "cylinder": lambda g: cylinder(_uniform(g, 0.25, 0.6), _uniform(g, 0.8, 2.0)),
    "cone": lambda g: cone(_uniform(g, 0.3, 0.7), _uniform(g, 0.8, 1.8)),
    "torus": lambda g: torus(0.7, _uniform(g, 0.12, 0.3)),
    "capsule": lambda g: capsule(_uniform(g, 0.25, 0.5), _uniform(g, 0.5, 1.5)),
    "pyramid": lambda g: pyramid(1.0, _uniform(g, 0.5, 1.5)),
    "table": lambda g: table(_uniform(g, 1.2, 2.0), _uniform(g, 0.7, 1.2), _uniform(g, 0.6, 1.0)),
    "chair": lambda g: chair(_uniform(g, 0.7, 1.0), _uniform(g, 0.7, 1.0), _uniform(g, 0.6, 0.9), _uniform(g, 0.6, 1.1)),
    "lamp": lambda g: lamp(pole_height=_uniform(g, 0.8, 1.6), shade_radius=_uniform(g, 0.35, 0.6)),
}


def make_shape(name: str, seed: int, pose: bool = True) -> Mesh:
    """Class `name` with proportions drawn from seed, in a random pose (a turn about +Z and a tilt of
    up to 10 degrees about X, then the turn again) when pose, normalised into the unit sphere."""
    if name not in CLASSES:
        raise ValueError(f"unknown shape class {name!r}; choose from {', '.join(CLASSES)}")
    g = torch.Generator().manual_seed(seed)
    mesh = CLASSES[name](g)
    if pose:
        turn = rotation_z(_uniform(g, 0, 2 * math.pi)) @ rotation_x(math.radians(_uniform(g, -10, 10)))
        mesh = mesh.transformed(rotation=turn, scale=_uniform(g, 0.7, 1.3))
    return mesh.normalized()


class ProceduralShapes(torch.utils.data.Dataset):
    """per_class meshes of each class in CLASSES (or classes), the same for the same split and seed on
    every machine: item i is class i % len(classes), made from a seed derived from (seed, split, i).
    Returns (Mesh, label)."""

    SPLITS = {"train": 0, "test": 1}

    def __init__(self, split: str = "train", per_class: int = 20, classes=None, seed: int = 0, pose: bool = True):
        if split not in self.SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.classes = tuple(CLASSES) if classes is None else tuple(classes)
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown or not self.classes:
            raise ValueError(f"unknown shape classes {unknown}; choose from {', '.join(CLASSES)}")
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.split, self.per_class, self.seed, self.pose = split, per_class, seed, pose

    def __len__(self):
        return self.per_class * len(self.classes)

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} shapes")
        i %= len(self)
        label = i % len(self.classes)
        item_seed = (self.seed * 2 + self.SPLITS[self.split]) * 1_000_003 + i
        return make_shape(self.classes[label], item_seed, self.pose), label
