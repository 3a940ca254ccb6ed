"""SparseTensor: active voxel sites and their features, plus helpers to make and densify them."""
from __future__ import annotations

import torch

from fastperc.functional import _validate
from fastperc.reference.sparse import coord_keys, decode_keys

KEY_LIMIT = 1 << 16  # x, y, z each in [0, 65535]
BATCH_LIMIT = 1 << 15  # batch in [0, 32767]: packed site keys stay non-negative (csrc/common/sparse_math.h)


def check_coords(coords, name: str = "coords") -> torch.Tensor:
    coords = _validate.tensor(coords, name)
    if coords.dtype != torch.int32:
        raise TypeError(f"{name} must be int32 (batch, x, y, z), got {coords.dtype}")
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"{name} must be (N, 4) = (batch, x, y, z), got shape {tuple(coords.shape)}")
    # Data-dependent checks run eagerly; under torch.compile the kernel-map op rejects out-of-range and
    # duplicate sites itself (TORCH_CHECK), and a graph cannot branch on tensor values.
    if not torch.compiler.is_compiling() and coords.numel():
        outside = (coords < 0).any(1) | (coords[:, 0] >= BATCH_LIMIT) | (coords[:, 1:] >= KEY_LIMIT).any(1)
        if outside.any():
            raise ValueError(f"{name}: batch must lie in [0, {BATCH_LIMIT - 1}] and x, y, z in [0, {KEY_LIMIT - 1}] "
                             f"(the key space), first bad site {coords[outside][0].tolist()}")
    return coords


def _check_sites(coords: torch.Tensor, spatial_shape) -> None:
    """Sites of a SparseTensor (coords already of the right dtype and shape): in the key space, inside
    spatial_shape, no duplicates."""
    check_coords(coords)
    if len(coords):
        if (coords[:, 1:] >= torch.tensor(spatial_shape, device=coords.device)).any():
            raise ValueError(f"coordinates must lie inside spatial_shape {spatial_shape}")
        keys = coord_keys(coords)
        if torch.unique(keys).numel() != keys.numel():
            raise ValueError("coords holds duplicate sites; merge them first (fastperc.sparse.voxelize)")


# Key of the kernel-map cache holding the version counter of the coords its maps were built from.
SITES_VERSION = "sites_version"


class SparseTensor:
    """Sites coords (N, 4) int32 = (batch, x, y, z) with features feats (N, C).

    stride: the tensor stride (1 for the input grid, 2 after one stride-2 conv, ...). spatial_shape:
    the (X, Y, Z) extent of the grid the coordinates live on; inferred as max + 1 when None. Sites must
    be unique (voxelize merges duplicates). Kernel maps built for this tensor's sites are cached on it
    and shared with every tensor made from it with the same sites, keyed by (kernel, stride, padding,
    dilation, transposed): layers never have to name keys.
    """

    def __init__(self, coords, feats, stride: int = 1, spatial_shape=None, _cache=None, _check: bool = True):
        # _check=False: the sites come from fastperc (an existing tensor's, an op's output, voxelize's),
        # already checked; skipping the range and duplicate checks matters, as every BatchNorm and
        # ReLU makes a new tensor on the same sites.
        coords = check_coords(coords) if _check else coords
        feats = _validate.float_tensor(feats, "feats")
        if feats.dim() != 2 or feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats must be (N = {coords.shape[0]}, C), got shape {tuple(feats.shape)}")
        if feats.device != coords.device:
            raise ValueError(f"feats is on {feats.device} but coords is on {coords.device}")
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        if spatial_shape is None:
            spatial_shape = tuple(int(v) + 1 for v in coords[:, 1:].amax(0).tolist()) if len(coords) else (1, 1, 1)
        spatial_shape = tuple(int(v) for v in spatial_shape)
        if len(spatial_shape) != 3 or min(spatial_shape) < 1 or max(spatial_shape) > KEY_LIMIT:
            raise ValueError(f"spatial_shape must be 3 sizes in [1, {KEY_LIMIT}], got {spatial_shape}")
        if _check and not torch.compiler.is_compiling():
            _check_sites(coords, spatial_shape)
        self._coords, self.feats, self.stride, self.spatial_shape = coords, feats, stride, spatial_shape
        self.cache = {} if _cache is None else _cache
        if not torch.compiler.is_compiling():
            self.cache.setdefault(SITES_VERSION, coords._version)

    @property
    def coords(self) -> torch.Tensor:
        """The sites (N, 4) int32. Not assignable: the kernel maps cached for them would go stale. For new
        sites make a new SparseTensor; features can be swapped with replace()."""
        return self._coords

    @property
    def maps(self) -> dict:
        """The kernel-map cache of these sites. Editing coords in place (x.coords[:, 1] += 1) bumps the
        tensor's version counter: the sites are then checked again and every cached map is dropped,
        so no convolution reads a map of the old sites."""
        if not torch.compiler.is_compiling():
            version = self.coords._version
            if self.cache.get(SITES_VERSION, version) != version:
                _check_sites(self.coords, self.spatial_shape)
                self.cache.clear()
            self.cache[SITES_VERSION] = version
        return self.cache

    @property
    def batch_size(self) -> int:
        return int(self.coords[:, 0].max().item()) + 1 if len(self.coords) else 0

    def replace(self, feats) -> "SparseTensor":
        """Same sites (and kernel-map cache), new features: what BatchNorm, ReLU, Dropout return."""
        return SparseTensor(self.coords, feats, self.stride, self.spatial_shape, _cache=self.cache, _check=False)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "SparseTensor":
        """The same sites on `device` (coords stay int32) with features in `dtype`. Kernel maps are
        cached per device, so the copy starts with an empty cache."""
        coords = self.coords if device is None else self.coords.to(device)
        feats = self.feats.to(device=coords.device, dtype=dtype or self.feats.dtype)
        return SparseTensor(coords, feats, self.stride, self.spatial_shape, _check=False)

    def to_dense(self, batch_size: int | None = None) -> torch.Tensor:
        """(B, C, X, Y, Z) dense tensor, zero at inactive sites."""
        b = self.batch_size if batch_size is None else batch_size
        dense = self.feats.new_zeros((b, self.feats.shape[1]) + self.spatial_shape)
        c = self.coords.long()
        dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = self.feats
        return dense

    @staticmethod
    def from_dense(dense: torch.Tensor, mask: torch.Tensor | None = None) -> "SparseTensor":
        """Sites where mask (B, X, Y, Z) is true (default: any channel non-zero) of a (B, C, X, Y, Z) tensor."""
        dense = _validate.float_tensor(dense, "dense")
        if dense.dim() != 5:
            raise ValueError(f"dense must be (B, C, X, Y, Z), got shape {tuple(dense.shape)}")
        mask = (dense != 0).any(1) if mask is None else mask
        idx = torch.nonzero(mask)
        feats = dense.permute(0, 2, 3, 4, 1)[mask]
        # nonzero gives unique sites; the batch index may still pass the key space.
        return SparseTensor(check_coords(idx.to(torch.int32)), feats, spatial_shape=tuple(dense.shape[2:]), _check=False)

    def __repr__(self):
        return (f"SparseTensor(sites={len(self.coords)}, channels={self.feats.shape[1]}, stride={self.stride}, "
                f"spatial_shape={self.spatial_shape}, dtype={self.feats.dtype}, device={self.feats.device})")


def cat(tensors) -> "SparseTensor":
    """Concatenates batches: batch indices of each tensor are shifted after the previous ones."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat needs at least one SparseTensor")
    coords, feats, offset = [], [], 0
    shape = tuple(max(t.spatial_shape[i] for t in tensors) for i in range(3))
    for t in tensors:
        if t.stride != tensors[0].stride:
            raise ValueError("cat: all tensors must have the same stride")
        c = t.coords.clone()
        c[:, 0] += offset
        offset += t.batch_size
        coords.append(c)
        feats.append(t.feats)
    return SparseTensor(torch.cat(coords), torch.cat(feats), tensors[0].stride, shape)


def select_batch(x: SparseTensor, items) -> SparseTensor:
    """The sites of the given batch items of x, renumbered 0..len(items)-1 in the order given: a rank's
    share of a batch under torch.distributed (fastperc.distributed.shard gives the items)."""
    items = [int(i) for i in items]
    if len(set(items)) != len(items):
        raise ValueError(f"select_batch: items must not repeat, got {items}")
    keep = torch.zeros(len(x.coords), dtype=torch.bool, device=x.coords.device)
    coords = x.coords.clone()
    for new, item in enumerate(items):
        rows = x.coords[:, 0] == item
        keep |= rows
        coords[rows, 0] = new
    return SparseTensor(coords[keep], x.feats[keep], x.stride, x.spatial_shape, _check=False)


def voxelize(points, voxel_size, batch=None, features=None, reduce: str = "mean"):
    """Points (N, 3) -> SparseTensor of the occupied voxels floor((p - min) / voxel_size).

    batch: (N,) int batch index per point (default 0). features: (N, C) per point (default: the points'
    coordinates relative to their voxel's corner, in voxel units). reduce: how points sharing a voxel
    merge: "mean", "sum" or "first" (the first point in input order).
    """
    points = _validate.float_tensor(points, "points")
    if points.dim() != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"points must be (N > 0, 3), got shape {tuple(points.shape)}")
    _validate.choice(reduce, "reduce", ("mean", "sum", "first"))
    finite = torch.isfinite(points).all(1)
    if not finite.all():
        # An inf point would stretch the grid or share a voxel with an inf feature; NaN has no voxel.
        bad = int(torch.nonzero(~finite)[0])
        raise ValueError(f"points must be finite: point {bad} is {points[bad].tolist()} "
                         f"({int((~finite).sum())} non-finite points in all)")
    size = torch.as_tensor(voxel_size, dtype=points.dtype, device=points.device).reshape(-1)
    if size.numel() not in (1, 3) or not (torch.isfinite(size) & (size > 0)).all():
        raise ValueError(f"voxel_size must be finite and > 0 (one value or three), got {voxel_size!r}")
    origin = points.amin(0)
    cells = torch.floor((points - origin) / size)
    # Checked before the int64 cast: a span that overflows to inf (1e308 apart) casts to garbage.
    if not (cells < KEY_LIMIT).all():
        raise ValueError(f"the points span {float(cells.max()) + 1:.6g} voxels along an axis; at most {KEY_LIMIT} fit "
                         "the key space (use a larger voxel_size)")
    grid = cells.to(torch.int64)
    b = torch.zeros(len(points), dtype=torch.int64, device=points.device) if batch is None else batch.to(torch.int64)
    if b.shape != (len(points),) or (b < 0).any() or (b >= BATCH_LIMIT).any():
        raise ValueError(f"batch must be (N,) with indices in [0, {BATCH_LIMIT - 1}]")
    feats = (points - origin) / size - grid.to(points.dtype) if features is None else features
    if feats.dim() != 2 or feats.shape[0] != len(points):
        raise ValueError(f"features must be (N, C), got shape {tuple(feats.shape)}")
    coords = torch.cat([b[:, None], grid], 1)
    keys, inverse = torch.unique(coord_keys(coords), return_inverse=True)
    n = len(keys)
    if reduce == "first":
        order = torch.arange(len(points), device=points.device)
        first = torch.full((n,), len(points), dtype=torch.int64, device=points.device).scatter_reduce(0, inverse, order, "amin")
        out = feats[first]
    else:
        out = feats.new_zeros((n, feats.shape[1])).index_add_(0, inverse, feats)
        if reduce == "mean":
            counts = torch.zeros(n, dtype=feats.dtype, device=feats.device).index_add_(0, inverse, torch.ones_like(inverse, dtype=feats.dtype))
            out = out / counts[:, None]
    vox = decode_keys(keys)
    return SparseTensor(vox, out, spatial_shape=tuple(int(v) + 1 for v in grid.amax(0).tolist()), _check=False)
