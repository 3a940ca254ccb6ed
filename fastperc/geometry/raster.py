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


def _edge_function(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(b - a) x (p - a) in 2D, computed from the lexicographically smaller endpoint so that the edge's
    two triangles get exactly opposite values (ties then resolve the same way for both)."""
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    first = torch.where(swap[:, None], b, a)
    second = torch.where(swap[:, None], a, b)
    w = (second[:, 0] - first[:, 0]) * (p[:, 1] - first[:, 1]) - (second[:, 1] - first[:, 1]) * (p[:, 0] - first[:, 0])
    return torch.where(swap, -w, w)


def coverage(t: torch.Tensor, p: torch.Tensor):
    """Triangles t (n, 3, 2) against points p (n, 2): (covered (n,), w (n, 3)) where w are the edge
    functions made positive inside (w[:, k] for the edge opposite corner k; w / w.sum(1) are the
    barycentric coordinates). Zero-area triangles cover nothing."""
    w = torch.stack([_edge_function(t[:, (k + 1) % 3], t[:, (k + 2) % 3], p) for k in range(3)], 1)
    area = w.sum(1)  # twice the signed area (> 0: counter-clockwise)
    sign = torch.where(area > 0, 1.0, -1.0).to(w.dtype)[:, None]
    w = w * sign
    # Edge k runs from corner k+1 to k+2; in counter-clockwise order it owns the points on it when it
    # goes down, or along +x when level: of the two triangles sharing an edge, exactly one owns it.
    d = (t[:, [2, 0, 1]] - t[:, [1, 2, 0]]) * sign[:, :, None]
    owns = (d[..., 1] < 0) | ((d[..., 1] == 0) & (d[..., 0] > 0))
    covered = ((w > 0) | ((w == 0) & owns)).all(1) & (area != 0)
    return covered, w
