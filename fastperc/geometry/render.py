"""A multi-view renderer for classification views (MVCNN, Su et al. 2015): triangle meshes to depth and
flat-shaded images with a z-buffer, in torch (CPU or CUDA), deterministic.

Cameras look at the origin from `distance` (perspective, field of view `fov` degrees), +Z up; the
MVCNN set is 12 views at azimuth 0, 30, ..., 330 degrees and elevation 30. Shading is a headlight:
0.3 + 0.6 |n . v| (n the visible face's normal, v the ray through the pixel), white background. Visibility: each pixel centre takes the nearest covering face (perspective-correct
depth); equal depths go to the lowest face index; a pixel on an edge shared by two faces belongs to
one (the rasteriser's top-left rule). Both reductions are ordered (scatter_reduce amin), so the
images do not depend on thread count or device.
"""
from __future__ import annotations

import math

import torch

from fastperc.geometry.mesh import Mesh
from fastperc.geometry.raster import box_chunks, coverage, edge_equations, enumerate_boxes

MVCNN_AZIMUTHS = tuple(float(a) for a in range(0, 360, 30))
MVCNN_ELEVATION = 30.0
AMBIENT, DIFFUSE = 0.3, 0.6


def mvcnn_cameras() -> list[tuple[float, float]]:
    """The 12 (azimuth, elevation) pairs of MVCNN, in degrees."""
    return [(a, MVCNN_ELEVATION) for a in MVCNN_AZIMUTHS]


def look_at(azimuth: float, elevation: float, distance: float, dtype=torch.float64):
    """(rotation world -> camera (3, 3), eye (3,)): camera x right, y up, z forward (depth)."""
    az, el = math.radians(azimuth), math.radians(elevation)
    eye = torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)], dtype=dtype) * distance
    forward = -eye / eye.norm()
    up = torch.tensor([0.0, 0.0, 1.0], dtype=dtype)
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-12:  # looking straight up or down: any right vector will do
        right = torch.tensor([0.0, -1.0, 0.0], dtype=dtype)
    right = right / right.norm()
    true_up = torch.linalg.cross(right, forward)
    return torch.stack([right, true_up, forward]), eye


def render(mesh: Mesh, cameras=None, size: int = 224, distance: float = 2.5, fov: float = 50.0):
    """Views of one mesh: {"image": (V, size, size) in [0, 1] (white background), "depth": (V, size,
    size) distance along the view axis (inf on the background), "face": (V, size, size) int64 index of
    the visible face (-1 on the background)}. cameras: (azimuth, elevation) pairs in degrees (default:
    MVCNN's 12). The whole mesh must lie in front of every camera."""
    cameras = mvcnn_cameras() if cameras is None else [tuple(map(float, c)) for c in cameras]
    if not cameras or any(len(c) != 2 for c in cameras):
        raise ValueError("cameras must be a non-empty list of (azimuth, elevation) pairs in degrees")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if not 0 < fov < 180 or not distance > 0:
        raise ValueError(f"need 0 < fov < 180 and distance > 0, got fov={fov}, distance={distance}")
    device, views = mesh.vertices.device, len(cameras)
    rotations, eyes = zip(*(look_at(a, e, distance) for a, e in cameras))
    rotation = torch.stack(rotations).to(device)
    eye = torch.stack(eyes).to(device)
    cam = torch.einsum("vij,nj->vni", rotation, mesh.vertices.double()) - torch.einsum("vij,vj->vi", rotation, eye)[:, None]
    if (cam[..., 2] <= 1e-9).any():
        raise ValueError("part of the mesh is behind a camera: move the cameras further (distance) or "
                         "normalise the mesh (Mesh.normalized())")
    focal = 1.0 / math.tan(math.radians(fov) / 2)
    screen = torch.stack([(cam[..., 0] / cam[..., 2] * focal + 1) * (size / 2),
                          (1 - cam[..., 1] / cam[..., 2] * focal) * (size / 2)], -1)  # pixels, y down
    faces = mesh.faces
    tri = screen[:, faces]  # (V, F, 3, 2)
    inv_depth = 1.0 / cam[..., 2][:, faces]  # (V, F, 3): linear in screen space
    tri, inv_depth = tri.reshape(-1, 3, 2), inv_depth.reshape(-1, 3)
    lo = torch.floor(tri.amin(1) - 0.5).long().clamp(0, size - 1)
    hi = torch.floor(tri.amax(1) - 0.5).long().clamp(0, size - 1)
    off_screen = (tri.amax(1) < 0).any(1) | (tri.amin(1) > size).any(1)
    pixels, depths, owners = [], [], []
    eq, owns, valid = edge_equations(tri)
    for idx, lo_, hi_ in box_chunks(lo, hi, off_screen):
        owner, cells = enumerate_boxes(lo_, hi_)
        owner = idx[owner]
        covered, w = coverage(eq, owns, valid, owner, cells.double() + 0.5)
        owner, cells, w = owner[covered], cells[covered], w[covered]
        depth = w.sum(1) / (w * inv_depth[owner]).sum(1)  # perspective-correct
        view = owner // len(faces)
        pixels.append((view * size + cells[:, 1]) * size + cells[:, 0])
        depths.append(depth)
        owners.append(owner % len(faces))
    n_pixels = views * size * size
    zbuf = torch.full((n_pixels,), math.inf, dtype=torch.float64, device=device)
    face_buf = torch.full((n_pixels,), len(faces), dtype=torch.long, device=device)  # no face yet
    if pixels:
        pixel, depth, face = torch.cat(pixels), torch.cat(depths), torch.cat(owners)
        zbuf.scatter_reduce_(0, pixel, depth, "amin")
        nearest = depth == zbuf[pixel]
        face_buf.scatter_reduce_(0, pixel[nearest], face[nearest], "amin")
    face_buf[face_buf == len(faces)] = -1
    face_buf = face_buf.reshape(views, size, size)
    visible = face_buf >= 0
    # Headlight: |n . v| with v the ray through each pixel (per pixel, so a flat face split into
    # triangles shades without a seam).
    normals = torch.einsum("vij,fj->vfi", rotation, mesh.face_normals().double())  # camera coordinates
    centre = (torch.arange(size, device=device, dtype=torch.float64) + 0.5) / (size / 2) - 1
    ray = torch.stack([centre[None, :].expand(size, size) / focal, -centre[:, None].expand(size, size) / focal,
                       torch.ones(size, size, dtype=torch.float64, device=device)], -1)
    ray = ray / ray.norm(dim=2, keepdim=True)  # (size, size, 3), row = y, column = x
    view_index = torch.arange(views, device=device)[:, None, None].expand_as(face_buf)
    n = normals[view_index[visible], face_buf[visible]]
    image = torch.ones((views, size, size), dtype=torch.float64, device=device)
    image[visible] = AMBIENT + DIFFUSE * (n * ray.expand(views, -1, -1, -1)[visible]).sum(1).abs()
    return {"image": image.float(), "depth": zbuf.reshape(views, size, size).float(), "face": face_buf}


def render_batch(meshes, cameras=None, size: int = 224, distance: float = 2.5, fov: float = 50.0) -> torch.Tensor:
    """(B, V, 3, size, size) float32 images of several meshes from the same cameras (gray shading
    repeated over 3 channels: what an ImageNet-style CNN takes)."""
    images = [render(m, cameras, size, distance, fov)["image"] for m in meshes]
    return torch.stack(images)[:, :, None].expand(-1, -1, 3, -1, -1).contiguous()
