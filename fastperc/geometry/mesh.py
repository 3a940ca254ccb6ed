"""Triangle meshes: vertices (V, 3) and faces (F, 3), normals, areas, unit-sphere normalisation and
area-weighted surface sampling."""
from __future__ import annotations

import math

import torch

from fastperc.functional import _validate


class Mesh:
    """vertices (V, 3) floating point, faces (F, 3) int64 indices into vertices (counter-clockwise seen
    from outside, so the cross product of the edges points out)."""

    def __init__(self, vertices, faces):
        vertices = _validate.float_tensor(vertices, "vertices")
        faces = _validate.tensor(faces, "faces")
        if vertices.dim() != 2 or vertices.shape[1] != 3:
            raise ValueError(f"vertices must be (V, 3), got shape {tuple(vertices.shape)}")
        if faces.dim() != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3) triangles, got shape {tuple(faces.shape)}")
        if faces.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"faces must hold integer indices, got {faces.dtype}")
        if faces.device != vertices.device:
            raise ValueError(f"faces is on {faces.device} but vertices is on {vertices.device}")
        if not torch.isfinite(vertices).all():
            raise ValueError("vertices must be finite")
        if faces.numel() and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError(f"faces index vertices in [{int(faces.min())}, {int(faces.max())}], "
                             f"but there are {len(vertices)} vertices")
        self.vertices, self.faces = vertices, faces.long()

    def __repr__(self):
        return f"Mesh(vertices={len(self.vertices)}, faces={len(self.faces)}, dtype={self.vertices.dtype})"

    def to(self, device=None, dtype=None) -> "Mesh":
        return Mesh(self.vertices.to(device=device, dtype=dtype), self.faces.to(device))

    @property
    def triangles(self) -> torch.Tensor:
        """(F, 3, 3): the three corners of each face."""
        return self.vertices[self.faces]

    def _cross(self) -> torch.Tensor:
        t = self.triangles
        return torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])

    def face_areas(self) -> torch.Tensor:
        return 0.5 * self._cross().norm(dim=1)

    def face_normals(self) -> torch.Tensor:
        """Unit outward normals (zero for degenerate faces)."""
        c = self._cross()
        return c / c.norm(dim=1, keepdim=True).clamp_min(torch.finfo(c.dtype).tiny)

    def vertex_normals(self) -> torch.Tensor:
        """Unit normals at the vertices: the area-weighted mean of the adjacent faces' normals."""
        c = self._cross()  # length = 2 x area: the weights come with it
        out = torch.zeros_like(self.vertices)
        for k in range(3):
            out.index_add_(0, self.faces[:, k], c)
        return out / out.norm(dim=1, keepdim=True).clamp_min(torch.finfo(out.dtype).tiny)

    def area(self) -> float:
        return float(self.face_areas().sum())

    def transformed(self, rotation=None, scale=None, translation=None) -> "Mesh":
        """v -> rotation @ (scale * v) + translation; scale a number or 3 per-axis factors. A negative
        determinant would turn the faces inside out, so their order is flipped to keep normals outward."""
        v, flip = self.vertices, False
        if scale is not None:
            s = torch.as_tensor(scale, dtype=v.dtype, device=v.device).reshape(-1)
            v = v * s
            flip ^= bool(s.prod() ** (3 // s.numel()) < 0)
        if rotation is not None:
            r = torch.as_tensor(rotation, dtype=v.dtype, device=v.device)
            v = v @ r.T
            flip ^= bool(torch.linalg.det(r) < 0)
        if translation is not None:
            v = v + torch.as_tensor(translation, dtype=v.dtype, device=v.device)
        faces = self.faces[:, [0, 2, 1]] if flip else self.faces
        return Mesh(v, faces)

    def normalized(self) -> "Mesh":
        """Centred on its bounding box's centre and scaled into the unit sphere (the farthest vertex at
        distance 1): the convention of ModelNet/ShapeNet pipelines, whose files have arbitrary units."""
        if len(self.vertices) == 0:
            raise ValueError("cannot normalise a mesh without vertices")
        centre = (self.vertices.amax(0) + self.vertices.amin(0)) / 2
        v = self.vertices - centre
        radius = v.norm(dim=1).max()
        if radius == 0:
            raise ValueError("cannot normalise a mesh whose vertices all coincide")
        return Mesh(v / radius, self.faces)

    def sample_surface(self, count: int, generator: torch.Generator | None = None):
        """count points uniformly on the surface (faces drawn by area, then uniform barycentric
        coordinates) and the face normal at each: (points (count, 3), normals (count, 3)). Seeded by
        generator (on the CPU; the points are moved to the mesh's device)."""
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive int, got {count!r}")
        areas = self.face_areas().cpu().double()
        if len(areas) == 0 or not areas.sum() > 0:
            raise ValueError("cannot sample a mesh without faces of positive area")
        face = torch.multinomial(areas, count, replacement=True, generator=generator).to(self.faces.device)
        u, v = torch.rand(2, count, 1, generator=generator, dtype=torch.float64).to(self.vertices)
        # sqrt(u) makes the density uniform over the triangle (Osada et al. 2002).
        su = u.sqrt()
        t = self.triangles[face]
        points = (1 - su) * t[:, 0] + su * (1 - v) * t[:, 1] + su * v * t[:, 2]
        return points, self.face_normals()[face]

    @staticmethod
    def merge(meshes) -> "Mesh":
        """One mesh of several parts (composed shapes): vertices stacked, faces re-indexed."""
        meshes = list(meshes)
        if not meshes:
            raise ValueError("merge needs at least one mesh")
        offsets = [0]
        for m in meshes[:-1]:
            offsets.append(offsets[-1] + len(m.vertices))
        return Mesh(torch.cat([m.vertices for m in meshes]), torch.cat([m.faces + o for m, o in zip(meshes, offsets)]))


def rotation_z(angle: float, dtype=torch.float64) -> torch.Tensor:
    """Rotation by angle (radians) about the up axis +Z."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)


def rotation_x(angle: float, dtype=torch.float64) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=dtype)
