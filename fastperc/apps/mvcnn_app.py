"""`fastperc mvcnn train|eval`: the multi-view CNN beside the single-view CNN it is compared with, on
renders of the procedural shapes (offline, the default) or of a ModelNet-layout folder (--data).

Two networks of the same architecture (fastperc.models.MVCNN) are trained on the same renders: the
multi-view one on the 12 views pooled by max, the single-view one on each view alone; the single-view
CNN is evaluated the paper's way (class probabilities averaged over the 12 views) and on one view at a
time, so the gain of view pooling is measured, not assumed. Writes to --out: the checkpoint (resumed
by running the same command again), metrics.json, curves.png and confusion.png (multi-view).
"""
from __future__ import annotations

import json
import os
import sys

import torch
import torch.nn.functional as F

from fastperc.apps.plots import confusion_matrix_png, line_plot
from fastperc.apps.progress import Progress
from fastperc.apps.shape_data import confusion_counts, load_run, load_split
from fastperc.geometry.render import render
from fastperc.models.mvcnn import MVCNN, single_view_scores

VIEWS = 12


def render_views(meshes, size: int, progress=None) -> torch.Tensor:
    """(shapes, 12, size, size) gray renders from MVCNN's cameras."""
    out = torch.empty((len(meshes), VIEWS, size, size))
    for i, mesh in enumerate(meshes):
        out[i] = render(mesh, size=size)["image"]
        if progress:
            progress.update(i + 1)
    return out


@torch.no_grad()
def evaluate(multi: MVCNN, single: MVCNN, views: torch.Tensor, labels: torch.Tensor, batch: int = 32) -> dict:
    multi.eval()
    single.eval()
    device = next(multi.parameters()).device
    pooled, averaged, one = [], [], []
    for start in range(0, len(views), batch):
        v = views[start:start + batch].to(device)
        pooled.append(multi(v).argmax(1).cpu())
        averaged.append(single_view_scores(single, v).argmax(1).cpu())
        one.append(single.per_view(v).argmax(2).cpu())
    pooled, averaged, one = torch.cat(pooled), torch.cat(averaged), torch.cat(one)
    confusion = confusion_counts(labels, pooled, multi.classifier[-1].out_features)
    return {"multi_view": (pooled == labels).float().mean().item(),
            "single_view_averaged": (averaged == labels).float().mean().item(),
            "single_view_one": (one == labels[:, None]).float().mean().item(), "confusion": confusion}


def train(args, out=sys.stderr) -> dict:
    device = torch.device(args.device)
    checkpoint = os.path.join(args.out, "mvcnn.pt")
    train_meshes, y, names, test_meshes, yt = load_run(args)
    x = render_views(train_meshes, args.size, Progress("rendering train", len(train_meshes), out, unit="shapes"))
    xt = render_views(test_meshes, args.size, Progress("rendering test", len(test_meshes), out, unit="shapes"))
    multi, single = (MVCNN(len(names), args.size).to(device) for _ in range(2))
    opts = [torch.optim.Adam(net.parameters(), lr=args.lr) for net in (multi, single)]
    keys = ("loss_multi", "loss_single", "multi_view", "single_view_averaged", "single_view_one")
    history, first = {k: [] for k in keys}, 0
    if os.path.exists(checkpoint):
        state = torch.load(checkpoint, map_location=device)
        if state["classes"] != names or state["size"] != args.size:
            raise ValueError(f"{checkpoint} was trained on other classes or another view size; use another --out")
        multi.load_state_dict(state["multi"])
        single.load_state_dict(state["single"])
        for opt, s in zip(opts, state["optimizers"]):
            opt.load_state_dict(s)
        torch.set_rng_state(state["rng"])
        history, first = state["history"], state["epoch"]
        print(f"fastperc mvcnn: resuming {checkpoint} after epoch {first}", file=out)
    steps = (len(x) + args.batch - 1) // args.batch
    for epoch in range(first, args.epochs):
        multi.train()
        single.train()
        order = torch.randperm(len(x))
        progress = Progress(f"epoch {epoch + 1}/{args.epochs}", steps, out)
        totals = [0.0, 0.0]
        for step, start in enumerate(range(0, len(x), args.batch)):
            idx = order[start:start + args.batch]
            v, labels = x[idx].to(device), y[idx].to(device)
            losses = (F.cross_entropy(multi(v), labels),
                      F.cross_entropy(single.per_view(v).flatten(0, 1), labels.repeat_interleave(VIEWS)))
            for opt, loss, i in zip(opts, losses, range(2)):
                opt.zero_grad()
                loss.backward()
                opt.step()
                totals[i] += loss.item() * len(idx)
            progress.update(step + 1, losses[0].item())
        scores = evaluate(multi, single, xt, yt)
        for key, value in zip(keys, (totals[0] / len(x), totals[1] / len(x), scores["multi_view"],
                                     scores["single_view_averaged"], scores["single_view_one"])):
            history[key].append(value)
        print(f"epoch {epoch + 1}: test accuracy {scores['multi_view']:.3f} multi-view, "
              f"{scores['single_view_averaged']:.3f} single-view averaged over {VIEWS} views, "
              f"{scores['single_view_one']:.3f} one view", file=out)
        torch.save({"multi": multi.state_dict(), "single": single.state_dict(),
                    "optimizers": [o.state_dict() for o in opts], "epoch": epoch + 1, "history": history,
                    "classes": names, "size": args.size, "rng": torch.get_rng_state()}, checkpoint)
    scores = evaluate(multi, single, xt, yt)
    result = dict(scores, classes=names, epochs=args.epochs, size=args.size, history=history,
                  train_shapes=len(x), test_shapes=len(xt))
    with open(os.path.join(args.out, "metrics.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    if history["multi_view"]:
        line_plot({"multi-view": history["multi_view"], "single-view, averaged": history["single_view_averaged"],
                   "one view": history["single_view_one"]}, os.path.join(args.out, "curves.png"),
                  "test accuracy: multi-view vs single-view CNN", y_range=(0.0, 1.0))
    confusion_matrix_png(result["confusion"], names, os.path.join(args.out, "confusion.png"))
    return result


def evaluate_checkpoint(args, out=sys.stderr) -> dict:
    state = torch.load(args.checkpoint, map_location=args.device)
    names = state["classes"]
    meshes, labels, _ = load_split(args.data, "test", args.test_per_class, names)
    multi, single = (MVCNN(len(names), state["size"]).to(args.device) for _ in range(2))
    multi.load_state_dict(state["multi"])
    single.load_state_dict(state["single"])
    views = render_views(meshes, state["size"], Progress("rendering test", len(meshes), out, unit="shapes"))
    return evaluate(multi, single, views, labels)


def add_parsers(sub, positive) -> None:
    m = sub.add_parser("mvcnn", help="multi-view CNN (Su et al. 2015) beside a single-view CNN: train or evaluate")
    actions = m.add_subparsers(dest="action", required=True)
    t = actions.add_parser("train", help="train both networks on the procedural shapes (default) or --data")
    e = actions.add_parser("eval", help="test accuracy of a checkpoint")
    for p in (t, e):
        p.add_argument("--data", metavar="DIR", help="ModelNet10/40 or any <class>/{train,test}/*.off folder")
        p.add_argument("--test-per-class", type=positive(int), default=10)
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    t.add_argument("--classes", help="comma-separated subset of the classes")
    t.add_argument("--per-class", type=positive(int), default=20)
    t.add_argument("--size", type=positive(int), default=64, help="view size in pixels, a multiple of 16")
    t.add_argument("--epochs", type=positive(int), default=15)
    t.add_argument("--batch", type=positive(int), default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="mvcnn_run")
    e.add_argument("--checkpoint", required=True)
    m.set_defaults(func=_cmd_mvcnn)


def _cmd_mvcnn(args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    if args.action == "train":
        if args.size % 16:
            raise ValueError(f"--size must be a multiple of 16, got {args.size}")
        result = train(args)
        print(f"test accuracy {result['multi_view']:.3f} multi-view, {result['single_view_averaged']:.3f} single-view "
              f"(averaged), {result['single_view_one']:.3f} one view; written to {args.out}/")
    else:
        result = evaluate_checkpoint(args)
        print(json.dumps({k: result[k] for k in ("multi_view", "single_view_averaged", "single_view_one")}))
    return 0
