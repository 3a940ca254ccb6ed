"""`fastperc bench --op subm`: submanifold 3x3x3 convolution on a real LiDAR scan (or a synthetic one),
fastperc vs its pure-PyTorch reference vs spconv (optional: pip install spconv), in one process; and
on a crop of the grid, fastperc vs dense conv3d over the whole crop.

Modes: "map" builds the kernel map only (spconv: spconv.pytorch.ops.get_indice_pairs, what its forward
calls for a new tensor); "fwd" runs the convolution on a prebuilt map (spconv: its cached indices);
"fwd+bwd" adds the backward to features and weights for a given output gradient (autograd.grad's
grad_outputs: no loss computed, whose elementwise passes over the output took a quarter of the row's
time on the 5 cm scan). err: max |out - float64 reference| /
max |reference| (forward output, or the feature gradient). GFLOP/s counts the useful work for every
implementation: 2 * pairs * C_in * C_out flop forward, three times that forward+backward (the feature
and weight gradients are one such product each); %peak divides it by a square GEMM in the same run
(fastperc.bench.gemm_peak).
"""
from __future__ import annotations

import os
import re

import torch

from fastperc import data, reference
from fastperc.bench import gemm_peak, peers_install_command, time_interleaved_ms, wrong_flag
from fastperc.sparse import functional as SF, voxelize

WORKLOADS = [(0.05, 32), (0.05, 64), (0.10, 32), (0.10, 64)]
QUICK_WORKLOADS = [(0.4, 16)]
# The dense comparison: conv3d over a box of the grid around the scan's middle site, against the
# submanifold convolution of the sites inside the box (equal at those sites).
CROP = (96, 96, 32)
QUICK_CROP = (16, 16, 8)


def load_points(path: str | None):
    """(points, description): the LiDAR scan shipped with fastperc (fastperc/data), the .npz file at `path`
    (key 'pc' in metres or 'pc_cm' in centimetres), or with path="synthetic" a synthetic street scene.
    FASTPERC_SCAN stands for `path` when none is given. A path that does not exist is an error."""
    path = path or os.environ.get("FASTPERC_SCAN")
    if path is None:
        points = data.lidar_scan()
        return points, f"lidar_scan.npz (shipped with fastperc, {len(points) // 1000}k points)"
    if path == "synthetic":
        g = torch.Generator().manual_seed(0)
        ground = torch.rand(150_000, 3, generator=g) * torch.tensor([60.0, 40.0, 0.05])
        walls = torch.rand(50_000, 3, generator=g) * torch.tensor([60.0, 0.05, 4.0])
        points = torch.cat([ground, walls])
        # shuffled, so that any prefix is a (sparser) scene of both planes, as a real scan's would be
        return points[torch.randperm(len(points), generator=g)], "synthetic (ground + wall planes)"
    if not os.path.isfile(path):
        raise ValueError(f"scan file {path} not found (the shipped scan is the default; --scan synthetic for a "
                         "synthetic one)")
    return data.load_points(path), os.path.basename(path)


def _spconv():
    try:
        import spconv.pytorch as spc  # noqa: F401

        return spc
    except Exception:
        return None


def run(quick: bool = False, scan: str | None = None, min_time: float = 0.3, device: str = "cpu",
        dtype: torch.dtype = torch.float32):
    """Every row on `device` with features in `dtype`; errors against a float64 CPU reference of the
    same float32 data."""
    points, source = load_points(scan)
    peak, peak_source = gemm_peak(device, dtype)
    rows = []
    spc = _spconv()
    workloads = QUICK_WORKLOADS if quick else WORKLOADS
    for voxel, channels in workloads:
        base_cpu = voxelize(points, voxel)
        n = len(base_cpu.coords)
        g = torch.Generator().manual_seed(0)
        feats = torch.randn(n, channels, generator=g)
        weight = torch.randn(27, channels, channels, generator=g) / (27 * channels) ** 0.5
        grad = torch.randn(n, channels, generator=g)
        shape = f"{int(voxel * 100)}cm C={channels} ({n // 1000}k)"
        kmap_cpu = SF.kernel_map(base_cpu.coords, base_cpu.coords, (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3)
        first = len(rows)
        truth_fwd = reference.sparse.conv(feats.double(), weight.double(), kmap_cpu)
        f64 = feats.double().requires_grad_(True)
        (truth_grad,) = torch.autograd.grad((reference.sparse.conv(f64, weight.double(), kmap_cpu) * grad.double()).sum(), f64)
        base = base_cpu.to(device)
        feats, weight, grad = (t.to(device, dtype) for t in (feats, weight, grad))
        kmap = kmap_cpu.to(device)

        for impl in ("fastperc", "reference"):
            for mode, truth in (("map", None), ("fwd", truth_fwd), ("fwd+bwd", truth_grad)):
                call = _call(impl, mode, base.coords, feats, weight, grad, kmap)
                rows.append(_row(mode, shape, impl, n, call, truth, None))
                # The kernel-map build has no per-ISA code: `--isa` does not compare its rows.
                rows[-1]["isa_independent"] = mode == "map"
        if spc is not None:
            try:
                rows.extend(_spconv_rows(spc, base, feats, weight, grad, shape, n, truth_fwd, truth_grad, min_time))
            except Exception as exc:  # e.g. a CPU-only spconv build given CUDA tensors: say so, keep the rest
                rows.append(dict(op="subm", mode="fwd", shape=shape, impl="spconv", ms=float("nan"),
                                 msites_s=float("nan"), err=None, note=f"failed: {type(exc).__name__}: {str(exc)[:80]}"))
        _set_work(rows[first:], kmap_cpu, channels)
        if channels == max(c for v, c in workloads if v == voxel):
            rows.extend(_crop_rows(base_cpu, voxel, channels, CROP if not quick else QUICK_CROP, device, dtype))
        _time_rows(rows[first:], min_time)
    for mode in ("map", "fwd", "fwd+bwd"):
        for shape in {r["shape"] for r in rows}:
            group = [r for r in rows if r["mode"] == mode and r["shape"] == shape]
            fast = next((r["ms"] for r in group if r["impl"] == "fastperc"), None)
            for r in group:
                r["fastperc_speedup"] = r["ms"] / fast if fast else float("nan")
    for r in rows:
        if r.get("gflop") and r["ms"] == r["ms"]:  # not for map rows or failed ones (nan)
            r["gflops"] = r["gflop"] / r["ms"] * 1e3
            r["peak_pct"] = 100 * r["gflops"] / peak
    return {"source": source, "threads": torch.get_num_threads(), "rows": rows, "spconv": spc is not None,
            "device": device, "dtype": str(dtype).replace("torch.", ""), "gemm_peak_gflops": peak,
            "gemm_peak_source": peak_source}


def _call(impl, mode, coords, feats, weight, grad, kmap):
    """The timed call of a row of fastperc or the reference: map, fwd or fwd+bwd."""
    if mode == "map":
        if impl == "fastperc":
            return lambda: torch.ops.fastperc.sparse_kernel_map(coords, coords, [3] * 3, [1] * 3, [1] * 3, [1] * 3, False)
        return lambda: reference.sparse.kernel_map(coords, coords, (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3)
    conv = torch.ops.fastperc.sparse_conv if impl == "fastperc" else reference.sparse.conv
    if mode == "fwd":
        return lambda: conv(feats, weight, kmap)

    def fwd_bwd():  # a training step's gradients: features and weights (reported: features)
        f, w = feats.detach().requires_grad_(True), weight.detach().requires_grad_(True)
        g_f, _ = torch.autograd.grad(conv(f, w, kmap), (f, w), grad)
        return g_f
    return fwd_bwd


def recheck_call(mode: str, shape: str, dtype: torch.dtype = torch.float32, scan: str | None = None):
    """fastperc's call of the row (mode, shape) on the CPU (what `fastperc bench --isa` times again with
    the ISAs interleaved), or None for a row it cannot rebuild (the crops)."""
    match = re.fullmatch(r"(\d+)cm C=(\d+) \(\d+k\)", shape)
    if match is None:
        return None
    base = voxelize(load_points(scan)[0], int(match[1]) / 100)
    channels = int(match[2])
    g = torch.Generator().manual_seed(0)
    feats, grad = (torch.randn(len(base.coords), channels, generator=g, dtype=dtype) for _ in range(2))
    weight = torch.randn(27, channels, channels, generator=g, dtype=dtype) / (27 * channels) ** 0.5
    kmap = SF.kernel_map(base.coords, base.coords, (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3)
    return _call("fastperc", mode, base.coords, feats, weight, grad, kmap)


def _set_work(rows, kmap, channels):
    """The useful flop of each convolution row (see the module docstring)."""
    forward = 2 * int((kmap >= 0).sum()) * channels * channels / 1e9
    for r in rows:
        if r["mode"] != "map":
            r["gflop"] = forward * (1 if r["mode"] == "fwd" else 3)


def _crop_rows(base, voxel, channels, box, device="cpu", dtype=torch.float32):
    c = base.coords
    # Centred on a real site, the one nearest the per-axis median (the median point itself may lie in
    # empty space), and moved inside the grid.
    median = c[:, 1:].median(0).values
    centre = c[(c[:, 1:] - median).abs().sum(1).argmin(), 1:]
    grid = torch.tensor(base.spatial_shape)
    lo = (centre - torch.tensor(box) // 2).clamp(min=torch.zeros(3, dtype=grid.dtype), max=(grid - torch.tensor(box)).clamp_min(0))
    inside = ((c[:, 1:] >= lo) & (c[:, 1:] < lo + torch.tensor(box))).all(1)
    coords = c[inside].clone()
    coords[:, 1:] -= lo.to(torch.int32)
    coords[:, 0] = 0
    n = len(coords)
    if n == 0:
        return []
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(n, channels, generator=g)
    weight = torch.randn(27, channels, channels, generator=g) / (27 * channels) ** 0.5
    grad = torch.randn(n, channels, generator=g)
    kmap = SF.kernel_map(coords, coords, (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3)
    dense_w = weight.reshape(3, 3, 3, channels, channels).permute(4, 3, 0, 1, 2).contiguous()
    idx = coords[:, 1:].long()
    truth_fwd = reference.sparse.conv(feats.double(), weight.double(), kmap)
    density = n / (box[0] * box[1] * box[2])
    shape = f"{int(voxel * 100)}cm C={channels} crop {box[0]}x{box[1]}x{box[2]} ({density:.1%})"

    def dense_fwd(f, w):
        grid = f.new_zeros((1, channels) + tuple(box))
        grid[0, :, idx[:, 0], idx[:, 1], idx[:, 2]] = f.t()
        out = torch.nn.functional.conv3d(grid, w, padding=1)
        return out[0, :, idx[:, 0], idx[:, 1], idx[:, 2]].t()

    def fwd_bwd(fn, w0):
        def run_once():  # gradients for features and weights, as in training (reported: features)
            f, w = feats.detach().requires_grad_(True), w0.detach().requires_grad_(True)
            g_f, _ = torch.autograd.grad(fn(f, w), (f, w), grad)
            return g_f
        return run_once

    f64 = feats.double().requires_grad_(True)
    (truth_grad,) = torch.autograd.grad((reference.sparse.conv(f64, weight.double(), kmap) * grad.double()).sum(), f64)
    feats, weight, grad, kmap, idx = (t.to(device) for t in (feats, weight, grad, kmap, idx))
    feats, weight, grad = (t.to(dtype) for t in (feats, weight, grad))
    dense_w = dense_w.to(device, dtype)
    sparse_fwd = lambda f, w: torch.ops.fastperc.sparse_conv(f, w, kmap)  # noqa: E731
    rows = []
    for impl, fn, w in (("fastperc", sparse_fwd, weight), ("dense conv3d", dense_fwd, dense_w)):
        rows.append(_row("fwd", shape, impl, n, lambda fn=fn, w=w: fn(feats, w), truth_fwd, None))
        rows.append(_row("fwd+bwd", shape, impl, n, fwd_bwd(fn, w), truth_grad, None))
    _set_work(rows, kmap, channels)
    return rows


def _row(mode, shape, impl, n, fn, truth, note):
    """A row with its error from one checked call of fn; _time_rows times it later (from `_call`, `_sites`)."""
    out = fn()
    err = None
    if truth is not None:
        err = ((out.double().cpu() - truth).abs().max() / truth.abs().max()).item()
    return dict(op="subm", mode=mode, shape=shape, impl=impl, ms=None, msites_s=None, err=err, note=note,
                _call=fn, _device=out.device.type, _sites=n)


def _time_rows(rows, min_time):
    """Times the rows not yet timed, those of one (workload, mode) interleaved with each other
    (fastperc.bench.time_interleaved_ms): fastperc, the reference and spconv see the same machine, so
    their ratios hold where its speed drifts (a shared VM)."""
    groups = {}
    for r in rows:
        if "_call" in r:
            groups.setdefault((r["shape"], r["mode"]), []).append(r)
    for group in groups.values():
        times = time_interleaved_ms([r["_call"] for r in group], group[0]["_device"], min_time=min_time)
        for r, ms in zip(group, times):
            r["ms"], r["msites_s"] = ms, r.pop("_sites") / ms / 1e3
            del r["_call"], r["_device"]


def _spconv_rows(spc, base, feats, weight, grad, shape, n, truth_fwd, truth_grad, min_time):
    c = feats.shape[1]
    conv = spc.SubMConv3d(c, c, 3, bias=False, indice_key="bench")
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(3, 3, 3, c, c).permute(4, 0, 1, 2, 3))
    coords, spatial = base.coords, list(base.spatial_shape)

    def fresh():
        return conv(spc.SparseConvTensor(feats, coords, spatial, 1)).features

    # spconv stores the indices it builds under indice_key in its *output* tensor's indice_dict.
    indices = conv(spc.SparseConvTensor(feats, coords, spatial, 1)).indice_dict

    def cached():
        t = spc.SparseConvTensor(feats, coords, spatial, 1, indice_dict=indices)
        return conv(t).features

    def fwd_bwd():
        f = feats.detach().requires_grad_(True)
        t = spc.SparseConvTensor(f, coords, spatial, 1, indice_dict=indices)
        g_f, _ = torch.autograd.grad(conv(t).features, (f, conv.weight), grad)
        return g_f

    rows = []
    fwd_row = _row("fwd", shape, "spconv", n, cached, truth_fwd, None)
    try:  # spconv's own map builder, the call its forward makes for a new tensor
        from spconv.core import ConvAlgo
        from spconv.pytorch import ops

        def build():
            return ops.get_indice_pairs(coords, 1 + int(coords[:, 0].max()), spatial, ConvAlgo.Native, [3] * 3,
                                        [1] * 3, [1] * 3, [1] * 3, [0] * 3, True, False)[1]

        rows.append(_row("map", shape, "spconv", n, build, None, "spconv.pytorch.ops.get_indice_pairs"))
    except (ImportError, AttributeError, TypeError):  # another spconv version: derive it from two forwards
        fresh_row = _row("fwd", shape, "spconv", n, fresh, truth_fwd, None)
        _time_rows([fwd_row, fresh_row], min_time)  # now: the map row is their difference
        map_ms = max(fresh_row["ms"] - fwd_row["ms"], 1e-6)
        rows.append(dict(op="subm", mode="map", shape=shape, impl="spconv", ms=map_ms, msites_s=n / map_ms / 1e3,
                         err=None, note="(fwd on a new tensor) - (fwd with cached indices)"))
    rows.append(fwd_row)
    threads = torch.get_num_threads()
    if feats.device.type == "cpu" and threads > 1:
        # spconv's multi-threaded CPU forward races in its scatter (its rows are WRONG RESULTs); on one
        # thread its answer is right. This row is what a user who needs that answer gets from it.
        def cached_one_thread():
            torch.set_num_threads(1)
            try:
                return cached()
            finally:
                torch.set_num_threads(threads)

        rows.append(_row("fwd", shape, "spconv 1 thread", n, cached_one_thread, truth_fwd, None))
    try:
        rows.append(_row("fwd+bwd", shape, "spconv", n, fwd_bwd, truth_grad, None))
    except Exception as exc:  # spconv's CPU backward is known to fail; report it
        rows.append(dict(op="subm", mode="fwd+bwd", shape=shape, impl="spconv", ms=float("nan"), msites_s=float("nan"),
                         err=None, note=f"failed: {type(exc).__name__}: {str(exc)[:80]}"))
    return rows


def format_table(result: dict) -> str:
    lines = [f"submanifold 3x3x3 conv on {result.get('device', 'cpu')} ({result.get('dtype', 'float32')}), "
             f"scan: {result['source']}, threads={result['threads']}, "
             f"GEMM peak ({result.get('gemm_peak_source', 'torch.mm')})={result['gemm_peak_gflops']:.0f} GFLOP/s"
             + ("" if result["spconv"] else " (spconv not installed: " + peers_install_command(["spconv"]) + ")")]
    cols = (f"{'mode':<9}{'workload':<38}{'impl':<17}{'ms':>10}{'Msites/s':>10}{'GFLOP/s':>9}{'%peak':>7}"
            f"{'fastperc speedup':>18}{'err':>10}")
    lines += [cols, "-" * len(cols)]
    for r in sorted(result["rows"], key=lambda r: (r["shape"], ("map", "fwd", "fwd+bwd").index(r["mode"]))):
        err = f"{r['err']:.1e}" if r["err"] is not None else "-"
        rate = f"{r['gflops']:.0f}" if "gflops" in r else "-"
        pct = f"{r['peak_pct']:.0f}" if "peak_pct" in r else "-"
        lines.append(f"{r['mode']:<9}{r['shape']:<38}{r['impl']:<17}{r['ms']:>10.2f}{r['msites_s']:>10.2f}{rate:>9}{pct:>7}"
                     f"{r['fastperc_speedup']:>17.2f}x{err:>10}" + (f"  {r['note']}" if r.get("note") else "")
                     + wrong_flag(r, result.get("dtype", "float32")))
    lines += [
        "map: building the kernel map only; fwd: the convolution on a prebuilt map; fwd+bwd: also both gradients.",
        "ms: median wall time; Msites/s: active sites per second; GFLOP/s: useful work, 2 * pairs * C_in * C_out "
        "forward (three times that forward+backward), the same count for every implementation (dense conv3d "
        "does more).",
        "%peak: that GFLOP/s over a square GEMM in this run (named in the head); fastperc speedup: this row's ms over fastperc's "
        "(above 1: fastperc is faster).",
        "err: largest |row - float64 reference| over the reference's largest |value| (the output, or the feature "
        "gradient).",
    ]
    if any(r["impl"] == "spconv 1 thread" for r in result["rows"]):
        lines.append("spconv 1 thread: its forward under torch.set_num_threads(1), where its answer is right (on more "
                     "threads its CPU scatter races); fastperc's ratios elsewhere are over the fastest peer, right or not.")
    return "\n".join(lines)
