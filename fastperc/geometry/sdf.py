"""Signed distance to a closed mesh (negative inside, DeepSDF's convention), DeepSDF's sampling recipe,
analytic SDFs of primitives (the test oracle), and meshes back from SDF grids by marching cubes.

The distance is exact for the mesh: the nearest point over the triangles (closest point on a triangle,
Ericson, Real-Time Collision Detection 5.1.5), evaluated only for the triangles whose bounding sphere
can hold the nearest point. The sign: by default the parity of the crossings of a vertical ray above the
point (the voxeliser's rasteriser, with its tie rule, over triangles binned on a 2D grid: exact for
closed meshes, O(triangles per bin) per point); or the generalised winding number (Jacobson et al.
2013: the triangles' solid angles / 4 pi, 1 inside and 0 outside, which also grades open meshes, at
O(triangles) per point).
"""
from __future__ import annotations

import math

import torch

from fastperc.geometry.mesh import Mesh
from fastperc.geometry.raster import coverage, edge_equations, enumerate_boxes

PAIRS_PER_CHUNK = 1 << 20  # (point, triangle) pairs evaluated at once


def _point_chunks(count: int, faces: int):
    step = max(1, PAIRS_PER_CHUNK // max(faces, 1))
    for start in range(0, count, step):
        yield slice(start, min(start + step, count))


def _closest_on_triangles(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Squared distance from points p (n, 1, 3) to triangles t (1, F, 3, 3): (n, F)."""
    a, b, c = t[..., 0, :], t[..., 1, :], t[..., 2, :]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    tiny = torch.finfo(p.dtype).tiny
    # The regions of Ericson's test, from the face inwards to the vertices (later ones take precedence).
    denom = (va + vb + vc)
    v = vb / torch.where(denom == 0, tiny, denom)
    w = vc / torch.where(denom == 0, tiny, denom)
    closest = a + ab * v[..., None] + ac * w[..., None]  # inside the face
    edge_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    wbc = (d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp_min(tiny)
    closest = torch.where(edge_bc[..., None], b + (c - b) * wbc[..., None], closest)
    edge_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    wac = d2 / (d2 - d6).clamp_min(tiny)
    closest = torch.where(edge_ac[..., None], a + ac * wac[..., None], closest)
    edge_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    vab = d1 / (d1 - d3).clamp_min(tiny)
    closest = torch.where(edge_ab[..., None], a + ab * vab[..., None], closest)
    closest = torch.where(((d6 >= 0) & (d5 <= d6))[..., None], c, closest)
    closest = torch.where(((d3 >= 0) & (d4 <= d3))[..., None], b, closest)
    closest = torch.where(((d1 <= 0) & (d2 <= 0))[..., None], a, closest)
    return ((p - closest) ** 2).sum(-1)


def unsigned_distance(mesh: Mesh, points: torch.Tensor) -> torch.Tensor:
    """(N,) distance from each point to the nearest point of the surface (exact, float64 inside)."""
    tris = mesh.triangles.double()
    lo, hi = tris.amin(1), tris.amax(1)
    centre = (lo + hi) / 2
    radius = (tris - centre[:, None]).norm(dim=2).amax(1)
    p = points.double()
    out = torch.empty(len(p), dtype=torch.float64, device=p.device)
    for rows in _point_chunks(len(p), len(mesh.faces)):
        q = p[rows, None]
        # Every point of a triangle lies in its bounding box and within radius of the box's centre: the
        # nearest triangle is within the smallest (distance to centre + radius), and a triangle whose
        # box is further away cannot hold the nearest point.
        bound = (torch.cdist(p[rows], centre) + radius).amin(1)
        to_box = (((lo - q).clamp_min(0) + (q - hi).clamp_min(0)) ** 2).sum(2)
        point, face = torch.nonzero(to_box <= (bound ** 2)[:, None], as_tuple=True)
        d2 = _closest_on_triangles(p[rows][point], tris[face])
        out[rows] = torch.full((rows.stop - rows.start,), math.inf, dtype=torch.float64,
                               device=p.device).scatter_reduce(0, point, d2, "amin")
    return out.sqrt().to(points.dtype)


def inside_by_parity(mesh: Mesh, points: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """(N,) bool: an odd number of crossings of the closed mesh on the vertical ray above each point.
    Triangles are binned on a bins x bins grid over the mesh's xy extent; a point tests the triangles
    of its bin, with the rasteriser's tie rule (a ray through a shared edge or vertex crosses once)."""
    tris = mesh.triangles.double()
    p = points.double()
    lo_xy, hi_xy = tris[..., :2].reshape(-1, 2).amin(0), tris[..., :2].reshape(-1, 2).amax(0)
    scale = bins / (hi_xy - lo_xy).clamp_min(1e-300)
    tri_lo = ((tris[..., :2].amin(1) - lo_xy) * scale).floor().long().clamp(0, bins - 1)
    tri_hi = ((tris[..., :2].amax(1) - lo_xy) * scale).floor().long().clamp(0, bins - 1)
    owner, cell = enumerate_boxes(tri_lo, tri_hi)
    cell_id = cell[:, 0] * bins + cell[:, 1]
    order = torch.argsort(cell_id, stable=True)
    owner, cell_id = owner[order], cell_id[order]
    start = torch.searchsorted(cell_id, torch.arange(bins * bins + 1, device=p.device))
    inside = torch.zeros(len(p), dtype=torch.bool, device=p.device)
    within = ((p[:, :2] >= lo_xy) & (p[:, :2] <= hi_xy)).all(1)
    idx = torch.nonzero(within).squeeze(1)
    pc = ((p[idx, :2] - lo_xy) * scale).floor().long().clamp(0, bins - 1)
    pid = pc[:, 0] * bins + pc[:, 1]
    counts = start[pid + 1] - start[pid]
    eq, owns, valid = edge_equations(tris[..., :2])
    point = torch.repeat_interleave(torch.arange(len(idx), device=p.device), counts)
    local = torch.arange(len(point), device=p.device) - (torch.cumsum(counts, 0) - counts)[point]
    face = owner[start[pid][point] + local]
    covered, w = coverage(eq, owns, valid, face, p[idx][point, :2])
    point, face, w = point[covered], face[covered], w[covered]
    z = (w * tris[face, :, 2]).sum(1) / w.sum(1)
    above = (z > p[idx][point, 2]).long()
    crossings = torch.zeros(len(idx), dtype=torch.long, device=p.device).index_add_(0, point, above)
    inside[idx] = crossings % 2 == 1
    return inside


def winding_number(mesh: Mesh, points: torch.Tensor) -> torch.Tensor:
    """(N,) generalised winding number: 1 inside a closed outward-facing mesh, 0 outside, in between
    near holes (Van Oosterom and Strackee's solid angle per triangle)."""
    tris = mesh.triangles.double()[None]
    p = points.double()
    out = torch.empty(len(p), dtype=torch.float64, device=p.device)
    for rows in _point_chunks(len(p), len(mesh.faces)):
        r = tris - p[rows, None, None]  # (n, F, 3 corners, 3)
        a, b, c = r[..., 0, :], r[..., 1, :], r[..., 2, :]
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        num = (a * torch.linalg.cross(b, c)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[rows] = (2 * torch.atan2(num, den)).sum(1) / (4 * math.pi)
    return out


def mesh_sdf(mesh: Mesh, points: torch.Tensor, sign: str = "parity") -> torch.Tensor:
    """(N,) signed distance from points (N, 3) to a closed mesh: negative inside. sign: "parity" (a
    vertical ray; fast) or "winding" (the generalised winding number; also grades meshes with holes)."""
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {tuple(points.shape)}")
    if sign not in ("parity", "winding"):
        raise ValueError(f"sign must be 'parity' or 'winding', got {sign!r}")
    inside = inside_by_parity(mesh, points) if sign == "parity" else winding_number(mesh, points) > 0.5
    d = unsigned_distance(mesh, points)
    return torch.where(inside, -d, d)


def sample_sdf(mesh: Mesh, count: int = 500_000, generator: torch.Generator | None = None,
               near_fraction: float = 47 / 50, variances=(0.005, 0.0005)):
    """DeepSDF's training samples of a mesh normalised into the unit sphere: near_fraction of them are
    surface points moved by Gaussian noise (half with each variance), the rest uniform in [-1, 1]^3.
    Returns (points (count, 3), sdf (count,)) in the mesh's dtype."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    if not 0 <= near_fraction <= 1:
        raise ValueError(f"near_fraction must be in [0, 1], got {near_fraction}")
    near = round(count * near_fraction)
    parts = []
    if near:
        surface, _ = mesh.sample_surface(near, generator)
        std = torch.tensor([math.sqrt(variances[i % len(variances)]) for i in range(near)], dtype=surface.dtype)
        noise = torch.randn(near, 3, generator=generator, dtype=surface.dtype) * std[:, None]
        parts.append(surface + noise.to(surface.device))
    if count - near:
        uniform = torch.rand(count - near, 3, generator=generator, dtype=mesh.vertices.dtype) * 2 - 1
        parts.append(uniform.to(mesh.vertices.device))
    points = torch.cat(parts)
    return points, mesh_sdf(mesh, points)


# ----------------------------------------------------------------------------- analytic SDFs (canonical pose)

def sdf_sphere(p: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    return p.norm(dim=-1) - radius


def sdf_box(p: torch.Tensor, size=(1.0, 1.0, 1.0)) -> torch.Tensor:
    q = p.abs() - torch.as_tensor(size, dtype=p.dtype, device=p.device) / 2
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


def sdf_cylinder(p: torch.Tensor, radius: float = 0.5, height: float = 1.0) -> torch.Tensor:
    """Capped cylinder about +Z, centred at the origin."""
    q = torch.stack([p[..., :2].norm(dim=-1) - radius, p[..., 2].abs() - height / 2], -1)
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


def sdf_torus(p: torch.Tensor, major: float = 0.7, minor: float = 0.25) -> torch.Tensor:
    q = torch.stack([p[..., :2].norm(dim=-1) - major, p[..., 2]], -1)
    return q.norm(dim=-1) - minor


def sdf_capsule(p: torch.Tensor, radius: float = 0.4, length: float = 1.0) -> torch.Tensor:
    """Segment from z = -length/2 to +length/2, thickened by radius."""
    z = p[..., 2].clamp(-length / 2, length / 2)
    return torch.stack([p[..., 0], p[..., 1], p[..., 2] - z], -1).norm(dim=-1) - radius


# ----------------------------------------------------------------------------- back to a mesh

def sdf_grid(fn, resolution: int = 64, bounds=(-1.0, 1.0), batch: int = 1 << 18, dtype=torch.float32,
             device=None) -> torch.Tensor:
    """fn evaluated on the resolution^3 grid of points spanning bounds (corners included): (R, R, R),
    index (i, j, k) = (x, y, z). fn takes (n, 3) points (a decoder, mesh_sdf, an analytic SDF)."""
    axis = torch.linspace(float(bounds[0]), float(bounds[1]), resolution, dtype=dtype, device=device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        values = torch.cat([fn(grid[i:i + batch]).reshape(-1) for i in range(0, len(grid), batch)])
    return values.reshape(resolution, resolution, resolution)


def marching_cubes(values: torch.Tensor, level: float = 0.0, bounds=(-1.0, 1.0)) -> Mesh:
    """The level surface of a grid from sdf_grid as an outward-facing Mesh (negative inside), through
    scikit-image's marching cubes (`pip install "fastperc[3d]"`)."""
    try:
        from skimage.measure import marching_cubes as _marching_cubes
    except ImportError:
        raise ImportError("marching cubes needs scikit-image: pip install 'fastperc[3d]' (or scikit-image)") from None
    v = values.detach().double().cpu().numpy()
    if v.ndim != 3 or min(v.shape) < 2:
        raise ValueError(f"values must be a 3D grid of at least 2 points per side, got shape {v.shape}")
    if not (v.min() < level < v.max()):
        raise ValueError(f"the grid does not cross level {level} (values in [{v.min():.4g}, {v.max():.4g}])")
    spacing = [(float(bounds[1]) - float(bounds[0])) / (n - 1) for n in v.shape]
    verts, faces, _, _ = _marching_cubes(v, level=level, spacing=spacing)
    mesh = Mesh(torch.from_numpy(verts.copy()).double() + float(bounds[0]), torch.from_numpy(faces.copy()).long())
    t = mesh.triangles
    if (t[:, 0] * torch.linalg.cross(t[:, 1], t[:, 2])).sum() < 0:  # inside out for this orientation
        mesh = Mesh(mesh.vertices, mesh.faces[:, [0, 2, 1]])
    return mesh
