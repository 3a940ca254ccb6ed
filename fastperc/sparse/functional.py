"""Sparse 3D convolution on SparseTensors: kernel maps (built once, cached on the tensor) and the
gather-GEMM compute op, with the pure-PyTorch reference wherever no kernel is compiled.

Weights are (K, C_in, C_out) with kernel offset k = (kx * Ky + ky) * Kz + kz, i.e. a dense
conv3d weight w (C_out, C_in, Kx, Ky, Kz) is w.permute(2, 3, 4, 1, 0).reshape(K, C_in, C_out)
(see fastperc.sparse.convert for spconv and MinkowskiEngine / TorchSparse layouts).
"""
from __future__ import annotations

import torch

from fastperc import _backend, reference
from fastperc.sparse.tensor import SparseTensor

MODES = ("submanifold", "regular", "transposed")


def triple(value, name: str, minimum: int):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * 3
    value = tuple(value)
    if len(value) != 3 or any((not isinstance(v, int)) or isinstance(v, bool) or v < minimum for v in value):
        raise ValueError(f"{name} must be an int >= {minimum} or three of them, got {value!r}")
    return value


def kernel_map(in_coords, out_coords, kernel_size, stride, padding, dilation, transposed=False):
    if _backend.use_kernel("sparse_kernel_map", in_coords.device):
        return torch.ops.fastperc.sparse_kernel_map(in_coords, out_coords, list(kernel_size), list(stride),
                                                    list(padding), list(dilation), transposed)
    return reference.sparse.kernel_map(in_coords, out_coords, kernel_size, stride, padding, dilation, transposed)


def out_coords(in_coords, kernel_size, stride, padding, dilation, spatial_shape, transposed=False):
    if _backend.use_kernel("sparse_out_coords", in_coords.device):
        return torch.ops.fastperc.sparse_out_coords(in_coords, list(kernel_size), list(stride), list(padding),
                                                    list(dilation), list(spatial_shape), transposed)
    return reference.sparse.out_coords(in_coords, kernel_size, stride, padding, dilation, spatial_shape, transposed)


def invert_map(kmap: torch.Tensor, n_in: int) -> torch.Tensor:
    """(K, n_in) map read the other way: inv[k, kmap[k, j]] = j (each input feeds at most one output per
    offset), -1 elsewhere. The backward of a convolution, and the forward of its inverse, use it."""
    inv = torch.full((kmap.shape[0], n_in), -1, dtype=torch.int32, device=kmap.device)
    k_idx, j_idx = torch.nonzero(kmap >= 0, as_tuple=True)
    inv[k_idx, kmap[k_idx, j_idx].long()] = j_idx.to(torch.int32)
    return inv


# Feature dtypes the compiled convolution takes per device; others run the reference.
KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64),
                 "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16)}


def apply_map(feats, weight, kmap, inv_map=None):
    if feats.dtype in KERNEL_DTYPES.get(feats.device.type, ()) and _backend.use_kernel("sparse_conv", feats.device):
        return torch.ops.fastperc.sparse_conv(feats, weight, kmap, inv_map)
    return reference.sparse.conv(feats, weight, kmap)


def _cached_inverse(cache: dict, key, kmap, n_in: int, submanifold: bool = False):
    """The inverse of a cached map, built once next to it (only when gradients will need it). A
    submanifold map's inverse is the map with its offsets in reverse order (odd kernels, "same"
    padding: site i is at offset d from site j exactly where j is at -d from i), a copy 20x faster
    than invert_map's scatter on the 5 cm LiDAR scan; the kernels check it against the map as they
    read it, like any given inverse."""
    inv_key = ("inverse_map",) + tuple(key)
    if inv_key not in cache:
        cache[inv_key] = kmap.flip(0) if submanifold else invert_map(kmap, n_in)
    return cache[inv_key]


def output_grid(spatial_shape, kernel_size, stride, padding, dilation, transposed):
    """The dense output size of a (transposed) convolution, per axis."""
    if transposed:
        return tuple((n - 1) * s - 2 * p + d * (k - 1) + 1
                     for n, k, s, p, d in zip(spatial_shape, kernel_size, stride, padding, dilation))
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(spatial_shape, kernel_size, stride, padding, dilation))


def conv3d(x: SparseTensor, weight: torch.Tensor, bias=None, kernel_size=3, stride=1, padding=0, dilation=1,
           mode: str = "submanifold") -> SparseTensor:
    """Sparse convolution of x with weight (K, C_in, C_out).

    mode "submanifold": output sites = input sites, "same" padding (odd kernels, stride 1).
    mode "regular": output sites = every site of the dense output grid whose window holds an input
    site (spconv's SparseConv3d); exact against conv3d(stride, padding, dilation) there.
    mode "transposed": the adjoint, exact against conv_transpose3d at its non-empty sites.
    """
    if not isinstance(x, SparseTensor):
        raise TypeError(f"x must be a fastperc.sparse.SparseTensor, got {type(x).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    ks = triple(kernel_size, "kernel_size", 1)
    st, dl = triple(stride, "stride", 1), triple(dilation, "dilation", 1)
    volume = ks[0] * ks[1] * ks[2]
    if not isinstance(weight, torch.Tensor) or weight.dim() != 3:
        raise ValueError(f"weight must be (K, C_in, C_out), got {getattr(weight, 'shape', weight)}")
    if weight.shape[0] != volume or weight.shape[1] != x.feats.shape[1]:
        raise ValueError(f"weight must be (K = {volume}, C_in = {x.feats.shape[1]}, C_out), got {tuple(weight.shape)}")
    if weight.dtype != x.feats.dtype or weight.device != x.feats.device:
        raise ValueError(f"weight ({weight.dtype}, {weight.device}) must match feats ({x.feats.dtype}, {x.feats.device})")
    if mode == "submanifold":
        if any(k % 2 == 0 for k in ks) or st != (1, 1, 1):
            raise ValueError(f"submanifold convolution needs odd kernel sizes and stride 1, got {ks}, {st}")
        pd = tuple((k - 1) // 2 * d for k, d in zip(ks, dl))
        key = ("submanifold", ks, dl)
        maps = x.maps
        if key not in maps:
            maps[key] = kernel_map(x.coords, x.coords, ks, st, pd, dl)
        kmap = maps[key]
        inv = _cached_inverse(maps, key, kmap, len(x.coords), submanifold=True) if torch.is_grad_enabled() else None
        out = apply_map(x.feats, weight, kmap, inv)
        out = out + bias if bias is not None else out
        return x.replace(out)
    pd = triple(padding, "padding", 0)
    template, kmap = _strided_sites(x, mode, ks, st, pd, dl)
    inv = _cached_inverse(x.maps, (mode, ks, st, pd, dl), kmap, len(x.coords)) if torch.is_grad_enabled() else None
    out = apply_map(x.feats, weight, kmap, inv)
    out = out + bias if bias is not None else out
    return template.replace(out)


def _strided_sites(x: SparseTensor, mode: str, ks, st, pd, dl):
    """(SparseTensor of the output sites without features, kernel map) of a regular or transposed
    convolution of x, built once and cached on x."""
    transposed = mode == "transposed"
    key = (mode, ks, st, pd, dl)
    maps = x.maps
    if key not in maps:
        grid = output_grid(x.spatial_shape, ks, st, pd, dl, transposed)
        if min(grid) < 1:
            raise ValueError(f"the output grid {grid} of spatial_shape {x.spatial_shape} is empty")
        coords = out_coords(x.coords, ks, st, pd, dl, x.spatial_shape, transposed)
        kmap = kernel_map(x.coords, coords, ks, st, pd, dl, transposed)
        new_stride = max(1, x.stride // st[0]) if transposed else x.stride * st[0]
        result = SparseTensor(coords, x.feats.new_empty((len(coords), 0)), new_stride, grid, _check=False)
        # The coarse tensor remembers how to go back: SparseInverseConv3d reuses this map.
        result.cache[("inverse_of", ks, st, pd, dl)] = (x, kmap)
        maps[key] = (result, kmap)
    return maps[key]


def pool3d(x: SparseTensor, kernel_size=2, stride=None, padding=0, dilation=1, reduce: str = "max") -> SparseTensor:
    """Max or average over the active sites in each window, at the sites of the matching regular
    convolution (so it shares that convolution's kernel map). Average divides by the number of active
    sites in the window (inactive sites are absent, not zeros)."""
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    ks = triple(kernel_size, "kernel_size", 1)
    st = ks if stride is None else triple(stride, "stride", 1)
    template, kmap = _strided_sites(x, "regular", ks, st, triple(padding, "padding", 0), triple(dilation, "dilation", 1))
    valid = (kmap >= 0).unsqueeze(-1)
    gathered = x.feats[kmap.clamp(min=0)]  # (K, N_out, C)
    if reduce == "max":
        out = torch.where(valid, gathered, torch.full_like(gathered, float("-inf"))).amax(0)
    else:
        out = torch.where(valid, gathered, torch.zeros_like(gathered)).sum(0) / valid.sum(0).clamp(min=1)
    return template.replace(out)


def inverse_conv3d(x: SparseTensor, weight, bias=None, kernel_size=3, stride=1, padding=0, dilation=1) -> SparseTensor:
    """Back to the sites of the regular convolution that produced x (same kernel parameters), reusing
    its kernel map transposed: fine[i] = sum_k coarse[j] @ weight[k] over the (j, k) that read i."""
    ks = triple(kernel_size, "kernel_size", 1)
    key = ("inverse_of", ks, triple(stride, "stride", 1), triple(padding, "padding", 0), triple(dilation, "dilation", 1))
    if key not in x.maps:
        raise ValueError("inverse_conv3d: x was not produced by a regular SparseConv3d with these kernel parameters")
    fine, kmap = x.maps[key]
    forward_key = ("regular",) + key[1:]
    if forward_key not in fine.maps:  # dropped: the fine sites were edited in place since x was made
        raise ValueError("inverse_conv3d: the sites x was made from changed in place since; its map is stale")
    # The inverse convolution reads the down-convolution's map the other way (the same inverse that
    # convolution's backward caches on the fine tensor); its own backward reads that map as is.
    inv = _cached_inverse(fine.maps, forward_key, kmap, len(fine.coords))
    out = apply_map(x.feats, weight, inv, kmap)
    out = out + bias if bias is not None else out
    return fine.replace(out)
