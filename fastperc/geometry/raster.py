"""Rasterisation shared by the voxeliser (rays along z through voxel columns) and the renderer (rays
through pixels): the integer cells under each triangle's bounding box, and which cell centres a
triangle covers, with the top-left tie rule so that a point on an edge or vertex shared by several
triangles of a surface is covered once."""
from __future__ import annotations

import torch

CANDIDATES_PER_CHUNK = 1 << 22  # (triangle, cell) pairs handled at once: bounds the memory (~0.5 GB)


def box_chunks(lo: torch.Tensor, hi: torch.Tensor, empty: torch.Tensor, limit: int = CANDIDATES_PER_CHUNK):
    """Indices of boxes lo..hi ((T, D), inclusive) in groups of at most `limit` cells in all (one big
    box may exceed it alone); boxes marked empty are left out. Yields (indices, lo, hi)."""
    counts = torch.where(empty, 0, (hi - lo + 1).clamp_min(0).prod(1))
    cumulative = torch.cumsum(counts, 0)
    start = 0
    while start < len(lo):
        base = cumulative[start - 1] if start else 0
        end = max(int(torch.searchsorted(cumulative, base + limit, right=True)), start + 1)
        idx = torch.arange(start, end, device=lo.device)[~empty[start:end]]
        yield idx, lo[idx], hi[idx]
        start = end


def enumerate_boxes(lo: torch.Tensor, hi: torch.Tensor):
    """For integer boxes lo..hi ((T, D), inclusive): (owner index, cell (n, D)) for every cell of every box."""
    sizes = (hi - lo + 1).clamp_min(0)
    counts = sizes.prod(1)
    owner = torch.repeat_interleave(torch.arange(len(lo), device=lo.device), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=lo.device) - start[owner]
    cells = torch.empty((len(owner), lo.shape[1]), dtype=torch.long, device=lo.device)
    for axis in reversed(range(lo.shape[1])):
        s = sizes[owner, axis]
        cells[:, axis] = lo[owner, axis] + local % s
        local = local // s
    return owner, cells


def edge_equations(t: torch.Tensor):
    """Per triangle t (T, 3, 2): the edge functions as equations (T, 3 edges, 3) = (A, B, C) with
    w_k(p) = A p_x + B p_y + C >= 0 inside (edge k opposite corner k), which edges own the points on
    them (T, 3), and which triangles have an area (T,).

    Each edge's equation is formed from its lexicographically smaller endpoint, so the two triangles
    that share an edge get exactly opposite equations, hence exactly opposite values at every point:
    with the ownership rule (in counter-clockwise order an edge owns its points when it goes down, or
    along +x when level) exactly one of them covers a point on the edge."""
    a, b = t[:, [1, 2, 0]], t[:, [2, 0, 1]]  # edge k from corner k+1 to k+2
    swap = (a[..., 0] > b[..., 0]) | ((a[..., 0] == b[..., 0]) & (a[..., 1] > b[..., 1]))
    first = torch.where(swap[..., None], b, a)
    second = torch.where(swap[..., None], a, b)
    # (second - first) x (p - first) = A p_x + B p_y + C
    A = -(second[..., 1] - first[..., 1])
    B = second[..., 0] - first[..., 0]
    C = -(A * first[..., 0] + B * first[..., 1])
    eq = torch.stack([A, B, C], -1) * torch.where(swap, -1.0, 1.0).to(t.dtype)[..., None]
    twice_area = torch.linalg.det(torch.cat([t, torch.ones_like(t[..., :1])], -1))  # > 0: counter-clockwise
    sign = torch.where(twice_area > 0, 1.0, -1.0).to(t.dtype)
    eq = eq * sign[:, None, None]
    d = (b - a) * sign[:, None, None]
    owns = (d[..., 1] < 0) | ((d[..., 1] == 0) & (d[..., 0] > 0))
    return eq, owns, twice_area != 0


def coverage(eq: torch.Tensor, owns: torch.Tensor, valid: torch.Tensor, owner: torch.Tensor, p: torch.Tensor):
    """Which points p (n, 2) the triangles owner (n,) cover, from edge_equations' output: (covered (n,),
    w (n, 3)), w the edge functions (positive inside; w / w.sum(1) are the barycentric coordinates)."""
    e = eq[owner]
    w = e[..., 0] * p[:, None, 0] + e[..., 1] * p[:, None, 1] + e[..., 2]
    covered = ((w > 0) | ((w == 0) & owns[owner])).all(1) & valid[owner]
    return covered, w
