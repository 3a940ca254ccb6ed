"""Times of the geometry functions (fastperc.geometry, knn_points), median of 3 after a warm-up call:

    python benchmarks/time_geometry.py

Not a pytest-benchmark suite: these are pure-PyTorch paths with no peer in this environment to
compare against (pytorch3d does not install here); the figures go to RESULTS.md.
"""
import platform
import statistics
import time

import torch

import fastperc
from fastperc.geometry import make_shape, solid_voxels, surface_voxels
from fastperc.geometry.render import render
from fastperc.geometry.sdf import sample_sdf


def median_s(fn, runs=3):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    for name in ("sphere", "chair", "lamp"):
        mesh = make_shape(name, 0)
        row = [f"{name:<7} {len(mesh.faces):>4} faces"]
        row.append(f"render 12 x 224^2: {1e3 * median_s(lambda: render(mesh)) / 12:6.1f} ms/view")
        for r in (32, 128):
            row.append(f"surface {r}^3: {1e3 * median_s(lambda: surface_voxels(mesh, r)):6.0f} ms")
            row.append(f"solid {r}^3: {1e3 * median_s(lambda: solid_voxels(mesh, r)):6.0f} ms")
        row.append(f"sdf 100k samples: {median_s(lambda: sample_sdf(mesh, 100_000, torch.Generator().manual_seed(0)), 1):5.2f} s")
        print("  ".join(row))
    x, y = torch.rand(1, 5000, 3), torch.rand(1, 5000, 3)
    t_knn = median_s(lambda: fastperc.knn_points(x, y))
    t_cd = median_s(lambda: fastperc.chamfer_distance(x, y))
    t_cdist = median_s(lambda: torch.cdist(x, y).min(2))
    print(f"knn_points 5000 x 5000 float32: {1e3 * t_knn:.0f} ms; chamfer_distance (both ways): {1e3 * t_cd:.0f} ms; "
          f"cdist + min (one way, holds the 5000 x 5000 matrix): {1e3 * t_cdist:.0f} ms")


if __name__ == "__main__":
    main()
