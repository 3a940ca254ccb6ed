"""Metrics between two images, or between the files of the same name in two folders; under torchrun
the pairs are split over the ranks and gathered on rank 0, so the table is the one process's."""
from __future__ import annotations

import csv
import json
import math
import os
from typing import NamedTuple

import torch

from fastperc import distributed
from fastperc.functional.ssim import ms_ssim, ssim
from fastperc.image import ImageError, read_image
from fastperc.losses import pixel

METRICS = ("ssim", "ms-ssim", "psnr", "mae", "rmse", "lpips")
DEFAULT_METRICS = ("ssim", "ms-ssim", "psnr", "mae", "rmse")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}")
    return names


def load_pair(path_a, path_b):
    """Both images as tensors with the same channel count: grayscale is kept when both are grayscale
    and expanded to RGB when only one is. Returns (a, b, notes)."""
    a, notes_a = read_image(path_a, channels="keep")
    b, notes_b = read_image(path_b, channels="keep")
    notes = [f"{path_a}: {n}" for n in notes_a] + [f"{path_b}: {n}" for n in notes_b]
    if a.shape[2:] != b.shape[2:]:
        raise ImageError(f"{path_a} is {a.shape[3]}x{a.shape[2]} but {path_b} is {b.shape[3]}x{b.shape[2]}; "
                         f"compare needs images of the same size")
    if a.shape[1] != b.shape[1]:
        gray = path_a if a.shape[1] == 1 else path_b
        notes.append(f"{gray}: grayscale expanded to RGB to match the other image")
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    return a, b, notes


def compute(a: torch.Tensor, b: torch.Tensor, metrics, lpips_model=None) -> dict[str, float | None]:
    """Each metric for images a, b in [0, 1]; None where it does not apply (MS-SSIM on small images)."""
    out = {}
    for m in metrics:
        if m in ("ssim", "ms-ssim"):
            fn = ssim if m == "ssim" else ms_ssim
            try:
                out[m] = fn(a, b, data_range=1.0, padding="valid").item()
            except ValueError:  # smaller than the window (at the coarsest scale): does not apply
                out[m] = None
        elif m == "psnr":
            out[m] = pixel.psnr(a, b, data_range=1.0).item()
        elif m == "mae":
            out[m] = pixel.mae(a, b).item()
        elif m == "rmse":
            out[m] = pixel.rmse(a, b).item()
        elif m == "lpips":
            x, y = (a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1))
            out[m] = lpips_model(x, y, normalize=True).item()
    return out


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The SSIM map at the image's size (reflect padding), averaged over channels, clamped to [0, 1]."""
    return ssim(a, b, data_range=1.0, padding="reflect", reduction="map").mean(1, keepdim=True).clamp(0, 1)


def folder_pairs(dir_a: str, dir_b: str):
    """(name, path_a, path_b) for image files present in both folders, and the names found in one only."""
    def images(d):
        return {f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(d, f))}
    in_a, in_b = images(dir_a), images(dir_b)
    pairs = [(n, os.path.join(dir_a, n), os.path.join(dir_b, n)) for n in sorted(in_a & in_b)]
    return pairs, sorted(in_a - in_b), sorted(in_b - in_a)


class PairResult(NamedTuple):
    name: str
    path_a: str
    path_b: str
    values: dict  # metric -> value, None where it does not apply
    notes: list  # what loading the pair changed (grayscale expanded, ...)


def evaluate(pairs, metrics, lpips_model=None, device="cpu", progress=None, errors=(ImageError, ValueError)):
    """Every pair's metrics, the pairs split over the ranks of a torch.distributed job (pair i on rank
    i mod world; one process does them all). Returns, on every rank and in the order of pairs, a
    PairResult per pair and the first error by pair order (a message, or None): a rank stops at its
    first unreadable pair, the others finish theirs, and no rank waits forever."""
    mine = distributed.shard(list(enumerate(pairs)))
    done = []
    with torch.no_grad():
        for step, (index, (name, path_a, path_b)) in enumerate(mine, 1):
            try:
                a, b, notes = load_pair(path_a, path_b)
                values = compute(a.to(device), b.to(device), metrics, lpips_model)
            except errors as err:
                done.append((index, None, [], str(err)))
                break
            done.append((index, values, notes, None))
            if progress is not None:
                progress.update(step)
    gathered = sorted((item for part in distributed.gather_objects(done) for item in part), key=lambda item: item[0])
    failed = [message for _, _, _, message in gathered if message is not None]
    results = [PairResult(*pairs[index], values, notes) for index, values, notes, message in gathered
               if message is None]
    return results, (failed[0] if failed else None)


def mean_values(results, metrics) -> dict[str, float | None]:
    """The mean of each metric over the pairs where it applies, summed in pair order (the same order,
    hence the same rounding, whatever the number of processes)."""
    mean = {}
    for m in metrics:
        values = [r.values[m] for r in results if r.values[m] is not None]
        mean[m] = sum(values) / len(values) if values else None
    return mean


def _cell(value):
    """A metric for CSV and JSON: None where it does not apply, inf as the string "inf" (PSNR of
    identical images; JSON has no infinity), full precision otherwise."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def write_csv(path, results, metrics) -> None:
    """One line per pair: pair, a, b, then the metrics (empty where one does not apply)."""
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["pair", "a", "b", *metrics])
        for r in results:
            out.writerow([r.name, r.path_a, r.path_b, *("" if r.values[m] is None else _cell(r.values[m]) for m in metrics)])


def write_json(path, results, metrics, mean) -> None:
    """{"metrics": [...], "pairs": [{"pair", "a", "b", metric: value}], "mean": {metric: value}}."""
    doc = {"metrics": list(metrics),
           "pairs": [{"pair": r.name, "a": r.path_a, "b": r.path_b, **{m: _cell(r.values[m]) for m in metrics}}
                     for r in results],
           "mean": {m: _cell(v) for m, v in mean.items()}}
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1, allow_nan=False)


def format_table(rows, metrics) -> str:
    """rows: (name, {metric: value}); a fixed-width table, 'n/a' for metrics that do not apply."""
    name_w = max([len("pair")] + [len(r[0]) for r in rows])
    head = f"{'pair':<{name_w}}  " + "  ".join(f"{m:>10}" for m in metrics)
    lines = [head, "-" * len(head)]
    for name, values in rows:
        cells = []
        for m in metrics:
            v = values.get(m)
            cells.append(f"{'n/a':>10}" if v is None else f"{v:>10.4f}" if abs(v) != float("inf") else f"{'inf':>10}")
        lines.append(f"{name:<{name_w}}  " + "  ".join(cells))
    return "\n".join(lines)
