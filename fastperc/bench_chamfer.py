"""`fastperc bench --op chamfer`: the Chamfer distance (mean squared nearest-neighbour distance both
ways), forward + backward to both clouds, fastperc vs its pure-PyTorch reference vs the `torch.cdist`
+ `min` composite users write without a kernel, in one process, with each row's peak memory.

Workloads: surface samples of procedural shapes (2 x N vs N), against other samples of the same
shapes (a reconstruction near its target: DeepSDF's evaluation, point-cloud autoencoders) and of other
shapes (clouds far apart: early training, retrieval), and the LiDAR scan shipped with fastperc against a copy
of itself jittered by 1 cm (the registration / scan-completion case). pytorch3d, the usual peer, has
no wheel for this torch (see benchmarks/RESULTS.md).

err: |loss - float64 reference| / |reference| and the same for the gradient of x. Peak memory: the
largest resident set above the row's starting one (Linux, /proc/self/status VmHWM after resetting it
through /proc/self/clear_refs), or the CUDA allocator's peak. Work: 8 flop per (query, target) pair
for brute force (D = 3: 3 subtractions, 3 products, 2 sums), both directions; "pair GFLOP/s" divides
that brute-force count by the time for every row, so the grid search's rate can pass the machine's.
"""
from __future__ import annotations

import re

import torch

import fastperc
from fastperc import _backend, data
from fastperc.bench import peak_memory_mb, time_interleaved_ms, wrong_flag
from fastperc.geometry import ProceduralShapes

CLOUD_SIZES = {"cpu": [2048, 16384], "cuda": [16384, 65536]}
QUICK_SIZES = [512]
SCAN_WORKLOAD = "LiDAR scan vs 1 cm jitter"
# The cdist composite holds B x N x M distances about four times over (distances, squares and their
# gradients): rows that would need more than this are reported, not run.
COMPOSITE_LIMIT_BYTES = 16 << 30


def _surface_clouds(batch: int, n: int, same_shape: bool, device, dtype):
    """n surface samples of `batch` procedural shapes, against other samples of the same shapes (a
    reconstruction near its target) or of other shapes (far apart: early training, retrieval)."""
    shapes = ProceduralShapes(per_class=1)
    meshes = [shapes[i][0] for i in range(2 * batch)]
    targets = meshes[:batch] if same_shape else meshes[batch:]
    x = [m.sample_surface(n, torch.Generator().manual_seed(i))[0] for i, m in enumerate(meshes[:batch])]
    y = [m.sample_surface(n, torch.Generator().manual_seed(100 + i))[0] for i, m in enumerate(targets)]
    return torch.stack(x).to(device=device, dtype=dtype), torch.stack(y).to(device=device, dtype=dtype)


def _scan_clouds(device, dtype):
    points = data.lidar_scan().double()
    g = torch.Generator().manual_seed(0)
    jittered = points + 0.01 * torch.randn(points.shape, generator=g, dtype=torch.float64)
    return points[None].to(device, dtype), jittered[None].to(device, dtype)


def composite_chamfer(x, y):
    """What users write without a kernel: every pairwise distance, then the row and column minima."""
    d2 = torch.cdist(x, y) ** 2
    return d2.min(2).values.mean(1).mean() + d2.min(1).values.mean(1).mean()


def reference_chamfer(x, y):
    old = _backend.force_reference
    _backend.force_reference = True
    try:
        return fastperc.chamfer_distance(x, y)
    finally:
        _backend.force_reference = old


IMPLS = {"fastperc": fastperc.chamfer_distance, "reference": reference_chamfer, "torch cdist+min": composite_chamfer}


def _step(impl, x, y):
    """The timed call: the loss and its gradient (both clouds require it; the one for x is asked for)."""
    def step():
        a, b = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
        loss = IMPLS[impl](a, b)
        (grad_x,) = torch.autograd.grad(loss, (a,))
        return loss, grad_x
    return step


def recheck_call(mode: str, shape: str, dtype: torch.dtype = torch.float32, scan: str | None = None):
    """fastperc's call of the row (mode, shape) on the CPU (what `fastperc bench --isa` times again with
    the ISAs interleaved)."""
    if shape == SCAN_WORKLOAD:
        return _step("fastperc", *_scan_clouds("cpu", dtype))
    match = re.fullmatch(r"2 x (\d+) vs \d+ (same|other) shape", shape)
    if match is None:
        return None
    return _step("fastperc", *_surface_clouds(2, int(match[1]), match[2] == "same", "cpu", dtype))


def _row(workload, impl, x, y, truth, pairs, device):
    """The row's error and peak memory; run() times it (interleaved with the workload's other rows)."""
    step = _step(impl, x, y)
    loss, grad_x = step()
    err = max(abs(loss.item() - truth[0].item()) / abs(truth[0].item()),
              ((grad_x.double().cpu() - truth[1]).abs().max() / truth[1].abs().max()).item())
    peak = peak_memory_mb(step, device)
    return dict(op="chamfer", mode="fwd+bwd", shape=workload, impl=impl, ms=None, peak_mb=peak, err=err,
                pair_gflops=None, _step=step, _pairs=pairs)


def run(quick: bool = False, device: str = "cpu", dtype: torch.dtype = torch.float32, min_time: float = 0.3,
        scan: bool = True):
    rows = []
    workloads = [(f"2 x {n} vs {n} {'same' if same else 'other'} shape", *_surface_clouds(2, n, same, device, dtype))
                 for n in (QUICK_SIZES if quick else CLOUD_SIZES[device]) for same in (True, False)]
    if scan and not quick:
        workloads.append((SCAN_WORKLOAD, *_scan_clouds(device, dtype)))
    for name, x, y in workloads:
        # Ground truth: the float64 kernel (itself tested against the reference in the test suite).
        a, b = x.detach().double().cpu().requires_grad_(True), y.detach().double().cpu()
        loss = fastperc.chamfer_distance(a, b)
        truth = (loss.detach(), torch.autograd.grad(loss, (a,))[0])
        pairs = 2 * x.shape[0] * x.shape[1] * y.shape[1]
        first = len(rows)
        for impl in IMPLS:
            composite_bytes = 4 * x.shape[0] * x.shape[1] * y.shape[1] * x.element_size()
            if impl == "torch cdist+min" and composite_bytes > COMPOSITE_LIMIT_BYTES:
                rows.append(dict(op="chamfer", mode="fwd+bwd", shape=name, impl=impl, ms=float("nan"),
                                 peak_mb=composite_bytes / 2**20, err=None, pair_gflops=float("nan"),
                                 note=f"not run: its {composite_bytes / 2**30:.0f} GB of distances"))
                continue
            if impl == "reference" and pairs > 2e9:
                rows.append(dict(op="chamfer", mode="fwd+bwd", shape=name, impl=impl, ms=float("nan"),
                                 peak_mb=float("nan"), err=None, pair_gflops=float("nan"),
                                 note="not run: minutes (every pair through a GEMM)"))
                continue
            rows.append(_row(name, impl, x, y, truth, pairs, device))
        steps = [(r, r.pop("_step")) for r in rows[first:] if "_step" in r]
        times = time_interleaved_ms([step for _, step in steps], device, min_time=min_time, min_runs=3, max_runs=50)
        for (r, _), ms in zip(steps, times):  # interleaved: the rows of a workload see the same machine
            r["ms"], r["pair_gflops"] = ms, 8 * r.pop("_pairs") / ms / 1e6
        fast = rows[first]["ms"]
        for r in rows[first:]:
            r["fastperc_speedup"] = r["ms"] / fast
    return {"device": device, "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
            "rows": rows}


def format_table(result: dict) -> str:
    lines = [f"Chamfer distance, forward + backward to both clouds, on {result['device']} ({result['dtype']}), "
             f"threads={result['threads']}"]
    cols = f"{'workload':<32}{'impl':<17}{'ms':>10}{'peak MB':>10}{'pair GFLOP/s':>14}{'fastperc speedup':>18}{'err':>10}"
    lines += [cols, "-" * len(cols)]
    for r in result["rows"]:
        err = f"{r['err']:.1e}" if r["err"] is not None else "-"
        ms = f"{r['ms']:.2f}" if r["ms"] == r["ms"] else "-"
        rate = f"{r['pair_gflops']:.1f}" if r["pair_gflops"] == r["pair_gflops"] else "-"
        speedup = f"{r['fastperc_speedup']:.1f}x" if r["fastperc_speedup"] == r["fastperc_speedup"] else "-"
        lines.append(f"{r['shape']:<32}{r['impl']:<17}{ms:>10}{r['peak_mb']:>10.1f}{rate:>14}{speedup:>18}{err:>10}"
                     + (f"  {r['note']}" if r.get("note") else "") + wrong_flag(r, result["dtype"]))
    lines += [
        "ms: median wall time of loss + backward; peak MB: memory above the starting footprint during one step.",
        "pair GFLOP/s: 8 flop per (query, target) pair both ways, as brute force would do them, over the time.",
        "fastperc speedup: this row's ms over fastperc's; err: vs the float64 kernel (loss and gradient of x).",
    ]
    return "\n".join(lines)
