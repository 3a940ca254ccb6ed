"""Reference sparse convolution: sort + searchsorted kernel maps, per-offset matmul + index_add.

Same semantics as the compiled ops (csrc/op_schemas.h): coordinates int32 (N, 4) = (batch, x, y, z);
kernel offset k = (kx * K + ky) * K + kz; a convolution with stride s, padding p, dilation d reads,
for output site o and offset k, the input site o * s - p + k * d (transposed: o = i * s - p + k * d).
"""
from __future__ import annotations

import itertools

import torch

KEY_BITS = 16  # per coordinate: batch in [0, 32767] and x, y, z in [0, 65535]; keys are non-negative


def coord_keys(coords: torch.Tensor) -> torch.Tensor:
    """One int64 per site: batch, x, y, z packed in 16 bits each (batch in [0, 32767], x, y, z in [0, 65535])."""
    c = coords.to(torch.int64)
    return (((c[:, 0] << KEY_BITS) | c[:, 1]) << KEY_BITS | c[:, 2]) << KEY_BITS | c[:, 3]


def decode_keys(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of coord_keys: (N, 4) int32 sites."""
    return torch.stack([keys >> 48, (keys >> 32) & 0xFFFF, (keys >> 16) & 0xFFFF, keys & 0xFFFF], 1).to(torch.int32)


def kernel_offsets(kernel_size, device=None) -> torch.Tensor:
    """(K^3, 3) offsets (kx, ky, kz) in the published order: k = (kx * Ky + ky) * Kz + kz."""
    ks = [range(k) for k in kernel_size]
    return torch.tensor(list(itertools.product(*ks)), dtype=torch.int64, device=device).reshape(-1, 3)


def lookup(in_coords: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Index of each query site (M, 4) int64 among in_coords, or -1; queries may be out of range."""
    keys = coord_keys(in_coords)
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    valid = ((query[:, 1:] >= 0) & (query[:, 1:] < 2**KEY_BITS)).all(1)
    q = torch.where(valid[:, None], query, torch.zeros_like(query))
    qk = coord_keys(q)
    pos = torch.searchsorted(sorted_keys, qk).clamp(max=max(len(keys) - 1, 0))
    found = valid & (len(keys) > 0) & (sorted_keys[pos] == qk) if len(keys) else torch.zeros_like(valid)
    return torch.where(found, order[pos], torch.full_like(pos, -1))


def kernel_map(in_coords, out_coords, kernel_size, stride, padding, dilation, transposed=False) -> torch.Tensor:
    """(K, N_out) int32: for output site j and offset k, the input index it reads, or -1."""
    offs = kernel_offsets(kernel_size, out_coords.device)
    o = out_coords.to(torch.int64)
    s = torch.tensor(stride, device=o.device)
    p = torch.tensor(padding, device=o.device)
    d = torch.tensor(dilation, device=o.device)
    maps = []
    for off in offs:
        if transposed:
            num = o[:, 1:] + p - off * d
            ok = (num % s == 0).all(1)
            spatial = torch.div(num, s, rounding_mode="floor")
        else:
            ok = torch.ones(len(o), dtype=torch.bool, device=o.device)
            spatial = o[:, 1:] * s - p + off * d
        q = torch.cat([o[:, :1], spatial], 1)
        idx = lookup(in_coords, q)
        maps.append(torch.where(ok, idx, torch.full_like(idx, -1)))
    return torch.stack(maps).to(torch.int32) if maps else torch.empty(0, len(o), dtype=torch.int32)


def conv(feats: torch.Tensor, weight: torch.Tensor, kmap: torch.Tensor) -> torch.Tensor:
    """out[j] = sum_k feats[kmap[k, j]] @ weight[k] (missing neighbours contribute nothing)."""
    n_out = kmap.shape[1]
    out = feats.new_zeros((n_out, weight.shape[2]))
    for k in range(kmap.shape[0]):
        sel = kmap[k] >= 0
        if sel.any():
            rows = torch.nonzero(sel).squeeze(1)
            out.index_add_(0, rows, feats[kmap[k, rows]] @ weight[k])
    return out


def out_coords(in_coords, kernel_size, stride, padding, dilation, spatial_shape, transposed=False):
    """Sorted unique output sites reached by the input sites (see csrc/op_schemas.h sparse_out_coords)."""
    from fastperc.sparse.functional import output_grid

    grid = torch.tensor(output_grid(spatial_shape, kernel_size, stride, padding, dilation, transposed),
                        device=in_coords.device)
    c = in_coords.to(torch.int64)
    s = torch.tensor(stride, device=c.device)
    p = torch.tensor(padding, device=c.device)
    d = torch.tensor(dilation, device=c.device)
    found = []
    for off in kernel_offsets(kernel_size, c.device):
        if transposed:
            o, ok = c[:, 1:] * s - p + off * d, torch.ones(len(c), dtype=torch.bool, device=c.device)
        else:
            num = c[:, 1:] + p - off * d
            ok = (num % s == 0).all(1)
            o = torch.div(num, s, rounding_mode="floor")
        ok &= ((o >= 0) & (o < grid)).all(1)
        found.append(torch.cat([c[ok, :1], o[ok]], 1))
    keys = torch.unique(coord_keys(torch.cat(found))) if found else torch.empty(0, dtype=torch.int64)
    return decode_keys(keys)
