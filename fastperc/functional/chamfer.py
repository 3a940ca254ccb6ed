"""K nearest neighbours and the Chamfer distance between batched, ragged point clouds.

Both run the knn_points kernels (CPU: brute force for small clouds, a uniform grid for large 3D ones;
CUDA: shared-memory tiled brute force) with a deterministic backward, and the exact pure-PyTorch
search of fastperc.reference.knn without them or for k or D above 32. Every path is exact with ties to
the lowest index, and none holds an N x M matrix.
"""
from __future__ import annotations

import torch

from fastperc import _backend
from fastperc.functional import _validate
from fastperc.reference import knn as _reference

# The knn_points kernels' limits (csrc/common/knn_math.h: kKnnMaxK, kKnnMaxDim; fastperc/ops.py's fake
# kernel checks the same): larger k or D run the reference.
KERNEL_MAX_K = 32
KERNEL_MAX_DIM = 32

REDUCTIONS = ("mean", "sum", "none")


def _lengths(lengths, batch: int, size: int, name: str, device) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), size, dtype=torch.long, device=device)
    lengths = _validate.tensor(lengths, name)
    if lengths.dtype not in (torch.int32, torch.int64) or lengths.shape != (batch,):
        raise ValueError(f"{name} must be ({batch},) integers, got {lengths.dtype} of shape {tuple(lengths.shape)}")
    if lengths.numel() and (lengths.min() < 0 or lengths.max() > size):
        raise ValueError(f"{name} must lie in [0, {size}] (the padded size), got {lengths.tolist()}")
    return lengths.to(device=device, dtype=torch.long)


def _clouds(x, y, x_lengths, y_lengths):
    x, y = _validate.float_tensor(x, "x"), _validate.float_tensor(y, "y")
    _validate.same_device(x, y, "x", "y")
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(f"x and y must be (B, N, D) and (B, M, D), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2] or x.shape[2] == 0:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must have the same batch size and the same D > 0")
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    xl = _lengths(x_lengths, x.shape[0], x.shape[1], "x_lengths", x.device)
    yl = _lengths(y_lengths, y.shape[0], y.shape[1], "y_lengths", x.device)
    for cloud, lengths, name in ((x, xl, "x"), (y, yl, "y")):
        used = torch.arange(cloud.shape[1], device=cloud.device)[None] < lengths[:, None]
        if not torch.isfinite(cloud[used]).all():
            raise ValueError(f"{name} holds NaN or infinite coordinates among its points (within its lengths)")
    return x, y, xl, yl


def _knn(x, y, k, xl, yl):
    """(squared distances, indices) by the kernel where one serves, else by the reference."""
    if k <= KERNEL_MAX_K and x.shape[2] <= KERNEL_MAX_DIM and _backend.use_kernel("knn_points", x.device):
        return torch.ops.fastperc.knn_points(x, y, xl, yl, k)
    return _reference.knn(x, y, k, xl, yl)


def knn_points(x, y, k: int = 1, x_lengths=None, y_lengths=None):
    """The k nearest points of y[b] for every point of x[b]: (squared distances (B, N, k), indices
    (B, N, k) int64), nearest first, ties to the lowest index. x (B, N, D), y (B, M, D); x_lengths,
    y_lengths (B,) use only the first points of each cloud (ragged batches). Padded queries and missing
    neighbours (k beyond a cloud's size) get distance inf and index -1. Differentiable in x and y,
    twice."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    x, y, xl, yl = _clouds(x, y, x_lengths, y_lengths)
    return _knn(x, y, k, xl, yl)


def _one_way(x, y, xl, yl, x_normals, y_normals, weights, squared):
    """Per-point nearest distances from x to y (B, N) (0 at padded points) and the normal term."""
    if bool(((xl > 0) & (yl == 0)).any()):
        raise ValueError("a cloud is empty while the other is not: its points have no nearest neighbour")
    d2, index = _knn(x, y, 1, xl, yl)
    valid = index[..., 0] >= 0
    safe = index[..., 0].clamp_min(0)
    zero = torch.zeros_like(d2[..., 0])
    if squared:
        dist = torch.where(valid, d2[..., 0], zero)
    else:  # sqrt with gradient 0 at distance 0 (a point on its neighbour), like a norm's subgradient
        dist = torch.where(valid & (d2[..., 0] > 0), d2[..., 0].clamp_min(torch.finfo(d2.dtype).tiny).sqrt(), zero)
    w = valid.to(x.dtype) if weights is None else torch.where(valid, weights, torch.zeros_like(weights))
    normal_term = None
    if x_normals is not None:
        ny = torch.gather(y_normals, 1, safe[..., None].expand(-1, -1, y_normals.shape[2]))
        cos = torch.nn.functional.cosine_similarity(x_normals, ny, dim=-1, eps=1e-12)
        normal_term = torch.where(valid, 1 - cos.abs(), torch.zeros_like(cos))
    return dist, normal_term, w


def _reduce_points(values, w, point_reduction):
    total = (values * w).sum(1)
    return total / w.sum(1).clamp_min(torch.finfo(w.dtype).tiny) if point_reduction == "mean" else total


def _check_per_point(t, name, like):
    if t is None:
        return None
    t = _validate.float_tensor(t, name)
    if t.shape != like or not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite with shape {tuple(like)}, got {tuple(t.shape)}")
    return t


def chamfer_distance(x, y, x_lengths=None, y_lengths=None, x_normals=None, y_normals=None, x_weights=None,
                     y_weights=None, squared: bool = True, single_directional: bool = False,
                     point_reduction: str = "mean", reduction: str = "mean"):
    """Chamfer distance between point clouds x (B, N, D) and y (B, M, D).

    Per point, the (squared, by default) distance to the nearest point of the other cloud; averaged
    (point_reduction="mean", weighted by x_weights / y_weights (B, N) / (B, M) when given) or summed
    over each cloud; x to y plus y to x, or x to y alone with single_directional. DeepSDF's evaluation
    is the default: mean squared distance one way plus the other. reduction over the batch: "mean",
    "sum" or "none" ((B,)). With x_normals and y_normals (shaped like the clouds) it returns
    (distance, normal term), the normal term being 1 - |cos| between each point's normal and its
    nearest neighbour's, reduced alike. Ragged batches through x_lengths / y_lengths.
    """
    _validate.choice(point_reduction, "point_reduction", ("mean", "sum"))
    _validate.choice(reduction, "reduction", REDUCTIONS)
    x, y, xl, yl = _clouds(x, y, x_lengths, y_lengths)
    if (x_normals is None) != (y_normals is None):
        raise ValueError("give both x_normals and y_normals, or neither")
    x_normals = _check_per_point(x_normals, "x_normals", x.shape)
    y_normals = _check_per_point(y_normals, "y_normals", y.shape)
    x_weights = _check_per_point(x_weights, "x_weights", x.shape[:2])
    y_weights = _check_per_point(y_weights, "y_weights", y.shape[:2])
    dist, normal_term, w = _one_way(x, y, xl, yl, x_normals, y_normals, x_weights, squared)
    total = _reduce_points(dist, w, point_reduction)
    normals = None if normal_term is None else _reduce_points(normal_term, w, point_reduction)
    if not single_directional:
        dist, normal_term, w = _one_way(y, x, yl, xl, y_normals, x_normals, y_weights, squared)
        total = total + _reduce_points(dist, w, point_reduction)
        if normals is not None:
            normals = normals + _reduce_points(normal_term, w, point_reduction)

    def batch_reduce(v):
        return v.mean() if reduction == "mean" else v.sum() if reduction == "sum" else v

    return batch_reduce(total) if normals is None else (batch_reduce(total), batch_reduce(normals))
