"""Exact K nearest neighbours of batched, ragged point clouds in pure PyTorch: the parity oracle of the
nearest-neighbour kernels to come, and what fastperc.chamfer_distance runs until then.

Memory: queries are taken in blocks, so the distance block is at most QUERY_BLOCK_ELEMENTS elements, never
N x M at once. Ties: of equally near points the lowest index comes first. Exact: a GEMM ranks, and the
few targets its rounding could misplace are ranked again by exact differences.
"""
from __future__ import annotations

import torch

QUERY_BLOCK_ELEMENTS = 1 << 22  # (queries x targets) distances held at once per batch item


def _block_knn(q: torch.Tensor, t: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (n, k) of the k nearest of t (M, D) for each of q (n, D), both float64, exactly.

    The |q|^2 + |t|^2 - 2 q.t form (a GEMM) ranks fast but rounds; every target within twice its
    rounding bound of the k-th smallest value is a candidate, and the candidates are ranked by their
    exact squared differences (ties: lowest index)."""
    d = q.shape[1]
    approx = (q * q).sum(1, keepdim=True) + (t * t).sum(1)[None] - 2 * q @ t.T
    # Rounding of a length-D dot product and the sums around it, with a generous constant.
    slack = 16 * (d + 2) * torch.finfo(torch.float64).eps * ((q * q).sum(1) + (t * t).sum(1).max())
    kth = torch.topk(approx, k, dim=1, largest=False, sorted=True).values[:, -1]
    row, col = torch.nonzero(approx <= (kth + 2 * slack)[:, None], as_tuple=True)  # row-major: columns ascending
    exact = ((q[row] - t[col]) ** 2).sum(1)
    order = torch.sort(exact, stable=True).indices  # by distance, ties keep the ascending column order
    order = order[torch.sort(row[order], stable=True).indices]  # then grouped by query
    row, col = row[order], col[order]
    first = torch.searchsorted(row, torch.arange(len(q), device=q.device))
    rank = torch.arange(len(row), device=q.device) - first[row]
    keep = rank < k
    out = torch.empty((len(q), k), dtype=torch.long, device=q.device)
    out[row[keep], rank[keep]] = col[keep]
    return out


def knn(x: torch.Tensor, y: torch.Tensor, k: int, x_lengths: torch.Tensor, y_lengths: torch.Tensor):
    """For each of the first x_lengths[b] points of x[b] (B, N, D), its k nearest among the first
    y_lengths[b] points of y[b] (B, M, D): (squared distances (B, N, k), indices (B, N, k) int64).
    Padded queries, and neighbours beyond a cloud's size, get distance inf and index -1. The distances
    are recomputed from the gathered points, so they are differentiable (twice) in x and y."""
    b_size, n, _ = x.shape
    dist = x.new_full((b_size, n, k), float("inf"))
    index = torch.full((b_size, n, k), -1, dtype=torch.long, device=x.device)
    for b in range(b_size):
        nx, ny = int(x_lengths[b]), int(y_lengths[b])
        if nx == 0 or ny == 0:
            continue
        kk = min(k, ny)
        targets = y[b, :ny].detach().double()
        centre = targets.mean(0)  # centred coordinates: smaller norms, smaller rounding
        targets = targets - centre
        step = max(1, QUERY_BLOCK_ELEMENTS // ny)
        for start in range(0, nx, step):
            end = min(start + step, nx)
            index[b, start:end, :kk] = _block_knn(x[b, start:end].detach().double() - centre, targets, kk)
    valid = index >= 0
    safe = index.clamp_min(0)
    gathered = torch.gather(y, 1, safe.reshape(b_size, -1, 1).expand(-1, -1, y.shape[2])).reshape(b_size, n, k, -1)
    d = ((x[:, :, None] - gathered) ** 2).sum(-1)
    return torch.where(valid, d, dist), index
