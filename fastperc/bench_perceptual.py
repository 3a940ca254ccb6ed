"""`fastperc bench --op perceptual`: one optimisation step of Gatys style transfer, VGG19 forward +
style loss on relu1_1..relu5_1 + content loss on relu4_2 + backward to the image, with fastperc's
fused style-loss kernel vs the plain-PyTorch composite (bmm Gram / (C H W) + mse_loss, autograd).

The rows share the backbone (seeded random VGG19 weights: the time does not depend on their values);
"loss only" rows time the losses and their backward on precomputed features, to show how much of
the step the losses are. err: max |grad - float64 composite| / max |float64 composite grad|, of the
image (step) or of the first style layer's features (loss only, on float64 copies of the same features).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from fastperc.bench import time_interleaved_ms, wrong_flag, wrong_result
from fastperc.losses.perceptual import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS
from fastperc.models import vgg19
from fastperc.nn.style import StyleLoss

SHAPES = {"cpu": [(1, 3, 256, 256), (4, 3, 128, 128)], "cuda": [(1, 3, 512, 512), (8, 3, 256, 256)]}
QUICK = [(1, 3, 64, 64)]
LAYERS = GATYS_STYLE_LAYERS + GATYS_CONTENT_LAYERS


def _composite_gram(f):
    b, c = f.shape[:2]
    f = f.reshape(b, c, -1)
    return torch.bmm(f, f.transpose(1, 2)) / (c * f.shape[2])


class CompositeStyle:
    """What users write without fastperc (pytorch/examples, the PyTorch tutorial)."""

    def __init__(self, style_feats):
        self.targets = [_composite_gram(f) for f in style_feats]

    def __call__(self, feats):
        return sum(F.mse_loss(_composite_gram(f), t.expand(f.shape[0], -1, -1)) for f, t in zip(feats, self.targets))


def setup(shape, device, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = vgg19(pool="avg").to(device=device, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(shape, generator=g).to(device=device, dtype=dtype)
    style = torch.rand((1,) + tuple(shape[1:]), generator=g).to(device=device, dtype=dtype)
    content = torch.rand(shape, generator=g).to(device=device, dtype=dtype)
    with torch.no_grad():
        style_feats = list(net(style, GATYS_STYLE_LAYERS).values())
        content_feats = net(content, GATYS_CONTENT_LAYERS)
    return net, image, style_feats, content_feats


def step_fn(impl, net, image, style_feats, content_feats):
    style_loss = StyleLoss(style_feats) if impl == "fastperc" else CompositeStyle(style_feats)
    leaf = image.detach().requires_grad_(True)

    def step():
        leaf.grad = None
        feats = net(leaf, LAYERS)
        content = sum(F.mse_loss(feats[k], content_feats[k]) for k in GATYS_CONTENT_LAYERS)
        (content + 1e3 * style_loss([feats[k] for k in GATYS_STYLE_LAYERS])).backward()
        return leaf.grad

    return step


def loss_only_fn(impl, net, image, style_feats, dtype=None):
    """The style losses and their backward on the net's features of image (cast to dtype, if given)."""
    style_loss = StyleLoss(style_feats) if impl == "fastperc" else CompositeStyle(style_feats)
    with torch.no_grad():
        feats = [f.to(dtype or f.dtype).requires_grad_(True) for f in net(image, GATYS_STYLE_LAYERS).values()]

    def run():
        for f in feats:
            f.grad = None
        style_loss(feats).backward()
        return feats[0].grad

    return run


def step_wrong(row: dict, composite_err: float, dtype: str) -> bool:
    """Whether a step row's result is wrong: above the dtype's limit, and above twice the composite's
    err on the same inputs. A step's err includes VGG19's own rounding, the same for both rows: a ReLU
    whose input rounds across zero sends the gradient another way than in float64. In a generic run
    on a Zen 5 (oneDNN's SSE4.1 convolutions) both rows were at 9.9e-3 and 3.8e-2; the float64 step
    given the float32 forward's ReLU masks is 3.8e-6 from the float32 one. The composite's err is
    that floor; a row is wrong where it is well above it. run() stores it as the row's "wrong",
    which fastperc.bench.wrong_result (the tables, the per-ISA view) takes over the err limit."""
    return wrong_result(row, dtype) and not row["err"] <= 2 * composite_err


def run(device: str = "cpu", quick: bool = False, dtype=torch.float32, min_time: float = 0.5):
    rows = []
    dtype_name = str(dtype).replace("torch.", "")
    for shape in QUICK if quick else SHAPES[device]:
        net, image, style_feats, content_feats = setup(shape, device, dtype)
        net64, image64, style64, content64 = setup(shape, device, torch.float64)
        truths = {"step": step_fn("torch", net64, image.to(torch.float64), style64, content64)().double(),
                  "loss only": loss_only_fn("torch", net, image, [f.double() for f in style_feats], torch.float64)()}
        group = []
        for what in ("step", "loss only"):
            fns = {impl: (step_fn(impl, net, image, style_feats, content_feats) if what == "step"
                          else loss_only_fn(impl, net, image, style_feats)) for impl in ("fastperc", "torch")}
            truth = truths[what]
            errors = {impl: ((fn().double() - truth).abs().max() / truth.abs().max()).item() for impl, fn in fns.items()}
            # Interleaved, so that both see the same machine (fastperc.bench.time_interleaved_ms).
            times = time_interleaved_ms(list(fns.values()), device, min_time=0.05 if quick else min_time, min_runs=3)
            for (impl, _), ms in zip(fns.items(), times):
                group.append(dict(shape="x".join(map(str, shape)), what=what, impl=impl, ms=ms, err=errors[impl]))
        for what in ("step", "loss only"):
            fast = next(r["ms"] for r in group if r["what"] == what and r["impl"] == "fastperc")
            for r in group:
                if r["what"] == what:
                    r["fastperc_speedup"] = r["ms"] / fast
        composite_err = next(r["err"] for r in group if r["what"] == "step" and r["impl"] == "torch")
        for r in group:
            if r["what"] == "step":
                r["wrong"] = step_wrong(r, composite_err, dtype_name)
        rows.extend(group)
        del net64, image64, style64, content64
    return {"device": device, "dtype": dtype_name, "threads": torch.get_num_threads(), "rows": rows}


def format_table(result: dict) -> str:
    lines = [f"perceptual step: VGG19 fwd + style (relu1_1..relu5_1) + content (relu4_2) + bwd; "
             f"device={result['device']} dtype={result['dtype']} threads={result['threads']}",
             f"{'shape':<14}{'rows':<11}{'impl':<22}{'ms':>10}{'fastperc speedup':>18}{'err':>10}"]
    lines.append("-" * len(lines[-1]))
    for r in result["rows"]:
        impl = "fastperc" if r["impl"] == "fastperc" else "torch (bmm + mse)"
        err = "-" if r["err"] is None else f"{r['err']:.1e}"
        lines.append(f"{r['shape']:<14}{r['what']:<11}{impl:<22}{r['ms']:>10.2f}{r['fastperc_speedup']:>17.2f}x{err:>10}"
                     + wrong_flag(r, result["dtype"]))
    lines += [
        "ms: median wall time; fastperc speedup: this row's ms over fastperc's (above 1: fastperc is faster).",
        "err: largest |row - float64 reference| over the reference's largest |value|: the image's gradient (step),",
        "the first style layer's (loss only). A step's err includes VGG19's own rounding (a ReLU that rounds across",
        "zero), which the composite's err measures: a step row is marked wrong only above twice that too.",
    ]
    return "\n".join(lines)
