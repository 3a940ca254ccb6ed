"""`fastperc bench --op voxnet`: one VoxNet training step (forward, cross-entropy, backward) on a
batch of voxelised procedural shapes, the dense network (conv3d) beside the sparse one (the two
convolutions on the occupied voxels; the same weights and, in eval mode, the same logits), per grid
resolution, with each row's peak memory (fastperc.bench.peak_memory_mb).

The fc layers are the paper's at every resolution (32 x 6^3 inputs at 32^3, 32 x 14^3 at 64^3, 32 x 30^3
= 864000 at 128^3, a 110M-weight first fc there) and cost the same in both rows; the difference is
the convolutions, which dense conv3d runs over the whole grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastperc.apps.voxnet_app import sites_of
from fastperc.bench import peak_memory_mb, time_interleaved_ms
from fastperc.geometry import ProceduralShapes, occupancy
from fastperc.models.voxnet import VoxNet

RESOLUTIONS = [32, 64, 128]
QUICK_RESOLUTIONS = [16]
BATCH = 8


def run(quick: bool = False, device: str = "cpu", min_time: float = 0.3):
    shapes = ProceduralShapes(per_class=1)
    meshes = [shapes[i][0] for i in range(BATCH)]
    labels = torch.arange(BATCH, device=device) % 4
    rows = []
    for resolution in QUICK_RESOLUTIONS if quick else RESOLUTIONS:
        grids = torch.stack([occupancy(m, resolution) for m in meshes]).to(device)
        torch.manual_seed(0)
        net = VoxNet(4, resolution).to(device)
        sites = sites_of(grids)

        def step(sparse):
            net.zero_grad(set_to_none=True)
            scores = net.forward_sparse(sites, BATCH) if sparse else net(grids)
            F.cross_entropy(scores, labels).backward()
            return scores

        first = len(rows)
        impls = (("dense conv3d", False), ("fastperc sparse", True))
        peaks = []
        for _, sparse in impls:
            step(sparse)
            peaks.append(peak_memory_mb(lambda: step(sparse), device))
        # Interleaved, so that both see the same machine (fastperc.bench.time_interleaved_ms).
        times = time_interleaved_ms([lambda sparse=sparse: step(sparse) for _, sparse in impls], device,
                                    min_time=min_time, min_runs=3, max_runs=20)
        for (impl, _), peak, ms in zip(impls, peaks, times):
            rows.append(dict(op="voxnet", mode="train step", shape=f"{BATCH} x {resolution}^3", impl=impl, ms=ms,
                             peak_mb=peak, occupied=f"{len(sites.coords) / grids.numel():.2%}"))
        net.eval()
        with torch.no_grad():
            gap = (net(grids) - net.forward_sparse(sites, BATCH)).abs().max().item()
        for r in rows[first:]:
            r["speedup"] = r["ms"] / rows[first + 1]["ms"]
            r["logit_gap"] = gap
    return {"device": device, "threads": torch.get_num_threads(), "rows": rows}


def format_table(result: dict) -> str:
    lines = [f"VoxNet training step (forward, cross-entropy, backward), batch {BATCH} procedural shapes (surface "
             f"voxels), on {result['device']}, threads={result['threads']}"]
    cols = f"{'grid':<14}{'occupied':>10}  {'impl':<17}{'ms':>10}{'peak MB':>10}{'sparse speedup':>16}{'eval logit gap':>16}"
    lines += [cols, "-" * len(cols)]
    for r in result["rows"]:
        lines.append(f"{r['shape']:<14}{r['occupied']:>10}  {r['impl']:<17}{r['ms']:>10.1f}{r['peak_mb']:>10.0f}"
                     f"{r['speedup']:>15.1f}x{r['logit_gap']:>16.1e}")
    lines += ["ms: median wall time of one step; peak MB: memory above the starting footprint during one step.",
              "sparse speedup: this row's ms over the sparse row's; eval logit gap: max |dense - sparse| logit, eval "
              "mode, same weights."]
    return "\n".join(lines)
