"""Exact K nearest neighbours of batched, ragged point clouds in pure PyTorch: the parity oracle of the
nearest-neighbour kernels to come, and what fastperc.chamfer_distance runs until then.

Memory: queries are taken in chunks, so the distance block is at most QUERY_BLOCK_ELEMENTS elements, never
N x M at once. Ties: of equally near points the lowest index comes first (a stable sort).
"""
from __future__ import annotations

import torch

QUERY_BLOCK_ELEMENTS = 1 << 22  # (queries x targets) distances held at once per batch item (x D float64)


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
        targets = y[b, :ny].detach()
        step = max(1, QUERY_BLOCK_ELEMENTS // ny)
        for start in range(0, nx, step):
            end = min(start + step, nx)
            q = x[b, start:end].detach().double()
            # Squared differences, not the |q|^2 + |t|^2 - 2 q.t matrix form, whose rounding would
            # reorder near-ties; in float64, where differences and squares of float32 inputs are exact.
            d2 = ((q[:, None, :] - targets.double()[None]) ** 2).sum(-1)
            index[b, start:end, :kk] = torch.sort(d2, dim=1, stable=True).indices[:, :kk]
    valid = index >= 0
    safe = index.clamp_min(0)
    gathered = torch.gather(y, 1, safe.reshape(b_size, -1, 1).expand(-1, -1, y.shape[2])).reshape(b_size, n, k, -1)
    d = ((x[:, :, None] - gathered) ** 2).sum(-1)
    return torch.where(valid, d, dist), index
