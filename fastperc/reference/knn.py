"""Exact K nearest neighbours of batched, ragged point clouds in pure PyTorch: the parity oracle of the
knn_points kernels (csrc/cpu/knn_kernel.cpp, csrc/cuda/knn_device.cuh), and what fastperc.knn_points
runs without them or for k or D beyond theirs.

Memory: queries are taken in blocks, so the distance block is at most QUERY_BLOCK_ELEMENTS elements, never
N x M at once. Ties: of equally near points the lowest index comes first. Exact: a GEMM ranks, and the
few targets its rounding could misplace are ranked again by the value the kernels rank by
(common/knn_math.h): sum_d (x_d - y_d)^2 in float64, added in dimension order.
"""
from __future__ import annotations

import torch

QUERY_BLOCK_ELEMENTS = 1 << 22  # (queries x targets) distances held at once per batch item


def exact_sq_dist(q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """sum_d (q_d - t_d)^2 of float64 rows, added in dimension order: the kernels' ranking value, bit for bit."""
    total = (q[:, 0] - t[:, 0]) ** 2
    for d in range(1, q.shape[1]):
        total = (q[:, d] - t[:, d]) ** 2 + total
    return total


def _block_knn(q: torch.Tensor, t: torch.Tensor, k: int, centre: torch.Tensor) -> torch.Tensor:
    """Indices (n, k) of the k nearest of t (M, D) for each of q (n, D), both float64, exactly.

    The |q|^2 + |t|^2 - 2 q.t form (a GEMM, on coordinates less `centre` to keep the norms small)
    ranks fast but rounds; every target within twice its rounding bound of the k-th smallest value is
    a candidate, and the candidates are ranked by exact_sq_dist (ties: lowest index)."""
    d = q.shape[1]
    qc, tc = q - centre, t - centre
    approx = (qc * qc).sum(1, keepdim=True) + (tc * tc).sum(1)[None] - 2 * qc @ tc.T
    # Rounding of a length-D dot product and the sums around it, with a generous constant.
    slack = 16 * (d + 2) * torch.finfo(torch.float64).eps * ((qc * qc).sum(1) + (tc * tc).sum(1).max())
    kth = torch.topk(approx, k, dim=1, largest=False, sorted=True).values[:, -1]
    row, col = torch.nonzero(approx <= (kth + 2 * slack)[:, None], as_tuple=True)  # row-major: columns ascending
    exact = exact_sq_dist(q[row], t[col])
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
        centre = targets.mean(0)
        step = max(1, QUERY_BLOCK_ELEMENTS // ny)
        for start in range(0, nx, step):
            end = min(start + step, nx)
            index[b, start:end, :kk] = _block_knn(x[b, start:end].detach().double(), targets, kk, centre)
    valid = index >= 0
    safe = index.clamp_min(0)
    gathered = torch.gather(y, 1, safe.reshape(b_size, -1, 1).expand(-1, -1, y.shape[2])).reshape(b_size, n, k, -1)
    d = ((x[:, :, None] - gathered) ** 2).sum(-1)
    return torch.where(valid, d, dist), index
