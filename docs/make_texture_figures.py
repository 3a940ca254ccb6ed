"""The before/after figures of the offline default (no weights file) and the statistics RESULTS.md
quotes: texture synthesis of the README's discs and scikit-image's brick, grass and gravel photos
(real textures that ship offline with scikit-image), and style transfer of scikit-image's astronaut in
the style of its coffee, by

- before: VGG19 with seeded random filters from pixel noise (the default until 2026-12-02), and
- after: the random multi-scale network (fastperc.models.RandomMultiScale) from a smooth start,

each with the same size, steps and seed. Statistics the synthesis does not optimise
(fastperc.apps.texture_stats): the distance of radially averaged power spectra and of colour histograms
to the exemplar (the style image, for style transfer), lower is closer.

    python docs/make_texture_figures.py [--size 128] [--steps 100] [--out docs]
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import torch
import torch.nn.functional as F

from fastperc.apps.style_transfer import luminance, transfer_style
from fastperc.apps.texture import synthesize_texture
from fastperc.apps.texture_stats import texture_report
from fastperc.functional import ssim
from fastperc.image import read_image, side_by_side, write_image
from fastperc.models import RandomMultiScale, vgg19

HERE = os.path.dirname(os.path.abspath(__file__))


def from_skimage(name: str) -> torch.Tensor:
    import skimage.data

    array = torch.from_numpy(getattr(skimage.data, name)()).float() / 255
    return array.expand(3, -1, -1)[None] if array.dim() == 2 else array.permute(2, 0, 1)[None]


def fit(image: torch.Tensor, side: int) -> torch.Tensor:
    """Resized (area) so that the longer side is `side`."""
    h, w = image.shape[-2:]
    scale = side / max(h, w)
    return F.interpolate(image, size=(round(h * scale), round(w * scale)), mode="area").contiguous()


def methods():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = vgg19(pool="avg")
    return {"before": dict(extractor=old, start="noise"), "after": dict(extractor=RandomMultiScale(), start="smooth")}


def textures(size: int, steps: int, out_dir: str) -> list[dict]:
    exemplars = {"discs": read_image(os.path.join(HERE, "discs.png"))[0]}
    exemplars.update({name: from_skimage(name) for name in ("brick", "grass", "gravel")})
    rows, strips = [], []
    for name, image in exemplars.items():
        exemplar = fit(image, size)
        results = [exemplar]
        for method, cfg in methods().items():
            start = time.perf_counter()
            out, losses, _ = synthesize_texture(exemplar, cfg["extractor"], (size, size), steps, start=cfg["start"])
            seconds = time.perf_counter() - start
            rows.append(dict(exemplar=name, method=method, seconds=round(seconds, 1), loss=losses[-1],
                             **texture_report(out, exemplar)))
            results.append(out)
            print(json.dumps(rows[-1]), flush=True)
        strips.append(side_by_side(results))
    gap = torch.ones(1, 3, 4, strips[0].shape[3])
    write_image(torch.cat([t for strip in strips for t in (strip, gap)][:-1], 2),
                os.path.join(out_dir, "texture_before_after.png"))
    return rows


def style_pair(size: int, steps: int, out_dir: str) -> list[dict]:
    content, style = fit(from_skimage("astronaut"), size), fit(from_skimage("coffee"), size)
    results, rows = [content, F.interpolate(style, size=content.shape[-2:], mode="area")], []
    for method, cfg in methods().items():
        colours = ("style", "content") if method == "after" else ("style",)
        for colour in colours:
            start = time.perf_counter()
            out, losses, _ = transfer_style(content, style, cfg["extractor"], steps, colour=colour)
            seconds = time.perf_counter() - start
            structure = float(ssim(luminance(out), luminance(content), 1.0))
            rows.append(dict(exemplar="astronaut + coffee", method=f"{method} (colour={colour})",
                             seconds=round(seconds, 1), loss=losses[-1], content_ssim=structure,
                             **texture_report(out, style)))
            results.append(out)
            print(json.dumps(rows[-1]), flush=True)
    write_image(side_by_side(results), os.path.join(out_dir, "style_before_after.png"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default=HERE)
    args = parser.parse_args()
    rows = textures(args.size, args.steps, args.out) + style_pair(args.size, args.steps, args.out)
    print("| exemplar | method | s | spectrum distance | colour distance | content SSIM (luminance) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        ssim_text = f"{r['content_ssim']:.3f}" if "content_ssim" in r else "-"
        print(f"| {r['exemplar']} | {r['method']} | {r['seconds']} | {r['spectrum']:.3f} | {r['colour']:.3f} | "
              f"{ssim_text} |")


if __name__ == "__main__":
    main()
