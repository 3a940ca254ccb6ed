"""Data that ships with fastperc, so the examples, tests and `fastperc bench` run offline.

`lidar_scan()`: one real outdoor LiDAR scan (see NOTICE.md in this folder: from the spconv project's
test data, Apache-2.0), thinned to one point per 2 cm cell and stored in whole centimetres (int16):
196,157 points in a 754 KB file. `fastperc.sparse.voxelize` gives 172,384 sites at 5 cm (the full
scan: 173,011), 125,388 at 10 cm (125,655) and 66,328 at 20 cm (66,449).
"""
import os

import numpy as np
import torch

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
LIDAR_SCAN = os.path.join(DATA_DIR, "lidar_scan.npz")


def load_points(path):
    """(N, 3) float32 points in metres from an .npz file: key `pc` (metres, as the full scan) or
    `pc_cm` (centimetres, as the copy shipped here)."""
    try:
        archive = np.load(path)
    except (OSError, ValueError) as err:  # not a file numpy can read, or a pickle it refuses
        raise ValueError(f"{path} is not a readable .npz point cloud ({err})") from None
    if not hasattr(archive, "files"):
        raise ValueError(f"{path} is a single array, not an .npz archive with 'pc' or 'pc_cm'")
    with archive as data:
        if "pc" in data:
            points = data["pc"].astype(np.float32)
        elif "pc_cm" in data:
            points = data["pc_cm"].astype(np.float32) * np.float32(0.01)
        else:
            raise ValueError(f"{path}: expected an array 'pc' (metres) or 'pc_cm' (centimetres), found {list(data)}")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{path}: points must be (N, 3), got {points.shape}")
    return torch.from_numpy(points)


def lidar_scan(path=None):
    """The LiDAR scan as an (N, 3) float32 tensor in metres: the copy shipped with fastperc, or `path`."""
    return load_points(path or LIDAR_SCAN)
