"""`fastperc voxnet train|eval`: VoxNet on occupancy grids of the procedural shapes (offline, the
default) or of ModelNet / any mesh folder in ModelNet's layout (--data), dense or sparse.

Training follows the paper: every shape voxelised at 12 turns about the up axis (+Z), one drawn per
shape and epoch (augmentation); evaluation sums the logits of the 12 turns (test-time voting) and also
reports the single upright grid. Adam instead of the paper's SGD (it converges in fewer CPU epochs).
Writes to --out: the checkpoint (resumed by running the same command again), metrics.json, the
training curves (curves.png) and the test confusion matrix (confusion.png).
"""
from __future__ import annotations

import json
import math
import os
import sys

import torch
import torch.nn.functional as F

from fastperc.apps.plots import confusion_matrix_png, line_plot
from fastperc.apps.progress import Progress
from fastperc.apps.shape_data import confusion_counts, load_run, load_split
from fastperc.geometry import occupancy
from fastperc.geometry.mesh import rotation_z
from fastperc.models.voxnet import VoxNet
from fastperc.sparse import SparseTensor

ROTATIONS = 12


def voxelise(meshes, resolution: int, rotations: int = ROTATIONS, solid: bool = False, progress=None):
    """(shapes, rotations, R, R, R) bool: each mesh turned by 360/rotations degrees steps about +Z."""
    out = torch.zeros((len(meshes), rotations) + (resolution,) * 3, dtype=torch.bool)
    for i, mesh in enumerate(meshes):
        for r in range(rotations):
            turned = mesh.transformed(rotation=rotation_z(2 * math.pi * r / rotations))
            out[i, r] = occupancy(turned, resolution, solid=solid)
        if progress:
            progress.update(i + 1)
    return out


def sites_of(grids: torch.Tensor) -> SparseTensor:
    """The occupied voxels of (B, R, R, R) grids as a SparseTensor (what the sparse path takes)."""
    coords = torch.nonzero(grids).to(torch.int32)
    return SparseTensor(coords, torch.ones((len(coords), 1), device=grids.device), spatial_shape=tuple(grids.shape[1:]))


def logits(net: VoxNet, grids: torch.Tensor, sparse: bool) -> torch.Tensor:
    return net.forward_sparse(sites_of(grids), batch_size=len(grids)) if sparse else net(grids)


@torch.no_grad()
def evaluate(net: VoxNet, grids: torch.Tensor, labels: torch.Tensor, sparse: bool, batch: int = 32):
    """(voting accuracy, upright accuracy, confusion matrix of the voting) over (N, rotations, R, R, R)."""
    net.eval()
    device = next(net.parameters()).device
    votes, upright = [], []
    for start in range(0, len(grids), batch):
        g = grids[start:start + batch].to(device)
        per_turn = torch.stack([logits(net, g[:, r], sparse) for r in range(g.shape[1])], 1)
        votes.append(per_turn.sum(1).argmax(1).cpu())
        upright.append(per_turn[:, 0].argmax(1).cpu())
    votes, upright = torch.cat(votes), torch.cat(upright)
    confusion = confusion_counts(labels, votes, net.fc2.out_features)
    return (votes == labels).float().mean().item(), (upright == labels).float().mean().item(), confusion


def train(args, out=sys.stderr) -> dict:
    device = torch.device(args.device)
    checkpoint = os.path.join(args.out, "voxnet.pt")
    train_meshes, train_labels, names, test_meshes, test_labels = load_run(args)
    x = voxelise(train_meshes, args.resolution, solid=args.solid,
                 progress=Progress("voxelising train", len(train_meshes), out, unit="shapes"))
    xt = voxelise(test_meshes, args.resolution, solid=args.solid,
                  progress=Progress("voxelising test", len(test_meshes), out, unit="shapes"))
    net = VoxNet(len(names), args.resolution).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    history = {"loss": [], "train_accuracy": [], "test_voting": [], "test_upright": []}
    first = 0
    if os.path.exists(checkpoint):
        state = torch.load(checkpoint, map_location=device)
        if state["classes"] != names or state["resolution"] != args.resolution:
            raise ValueError(f"{checkpoint} was trained on other classes or another resolution; use another --out")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        history, first = state["history"], state["epoch"]
        print(f"fastperc voxnet: resuming {checkpoint} after epoch {first}", file=out)
    steps = (len(x) + args.batch - 1) // args.batch
    for epoch in range(first, args.epochs):
        net.train()
        order = torch.randperm(len(x))
        turns = torch.randint(0, ROTATIONS, (len(x),))  # augmentation: one turn per shape and epoch
        progress = Progress(f"epoch {epoch + 1}/{args.epochs}", steps, out)
        total, right = 0.0, 0
        for step, start in enumerate(range(0, len(x), args.batch)):
            idx = order[start:start + args.batch]
            grids, labels = x[idx, turns[idx]].to(device), train_labels[idx].to(device)
            scores = logits(net, grids, args.sparse)
            loss = F.cross_entropy(scores, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            right += int((scores.argmax(1) == labels).sum())
            progress.update(step + 1, loss.item())
        voting, upright, confusion = evaluate(net, xt, test_labels, args.sparse)
        for key, value in (("loss", total / len(x)), ("train_accuracy", right / len(x)), ("test_voting", voting),
                           ("test_upright", upright)):
            history[key].append(value)
        print(f"epoch {epoch + 1}: loss {total / len(x):.4f}, test accuracy {voting:.3f} with voting over "
              f"{ROTATIONS} turns, {upright:.3f} upright", file=out)
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1, "history": history,
                    "classes": names, "resolution": args.resolution, "rng": torch.get_rng_state()}, checkpoint)
    voting, upright, confusion = evaluate(net, xt, test_labels, args.sparse)
    result = {"classes": names, "epochs": args.epochs, "resolution": args.resolution, "sparse": args.sparse,
              "test_voting": voting, "test_upright": upright, "confusion": confusion, "history": history,
              "train_shapes": len(x), "test_shapes": len(xt)}
    _write_outputs(args.out, result)
    return result


def _write_outputs(folder, result):
    with open(os.path.join(folder, "metrics.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    h = result["history"]
    if h["loss"]:
        line_plot({"train loss": h["loss"]}, os.path.join(folder, "loss.png"), "VoxNet: training loss")
        line_plot({"train accuracy": h["train_accuracy"], "test, 12-turn voting": h["test_voting"],
                   "test, upright only": h["test_upright"]}, os.path.join(folder, "curves.png"),
                  "VoxNet: accuracy", y_range=(0.0, 1.0))
    confusion_matrix_png(result["confusion"], result["classes"], os.path.join(folder, "confusion.png"))


def evaluate_checkpoint(args, out=sys.stderr) -> dict:
    state = torch.load(args.checkpoint, map_location=args.device)
    names = state["classes"]
    meshes, labels, _ = load_split(args.data, "test", args.test_per_class, names)
    net = VoxNet(len(names), state["resolution"]).to(args.device)
    net.load_state_dict(state["model"])
    grids = voxelise(meshes, state["resolution"], solid=args.solid,
                     progress=Progress("voxelising test", len(meshes), out, unit="shapes"))
    voting, upright, confusion = evaluate(net, grids, labels, args.sparse)
    print(f"test accuracy {voting:.3f} with voting over {ROTATIONS} turns, {upright:.3f} upright "
          f"({len(meshes)} shapes)", file=out)
    return {"classes": names, "test_voting": voting, "test_upright": upright, "confusion": confusion}


def add_parsers(sub, positive, device_choices=("cpu", "cuda")) -> None:
    v = sub.add_parser("voxnet", help="VoxNet (Maturana and Scherer 2015) on voxel grids: train or evaluate")
    actions = v.add_subparsers(dest="action", required=True)
    t = actions.add_parser("train", help="train on the procedural shapes (default) or --data")
    e = actions.add_parser("eval", help="test accuracy of a checkpoint, with and without voting")
    for p in (t, e):
        p.add_argument("--data", metavar="DIR", help="ModelNet10/40 (or any folder of <class>/{train,test}/*.off); "
                       "default: the procedural shapes, generated offline")
        p.add_argument("--test-per-class", type=positive(int), default=10, help="procedural test shapes per class")
        p.add_argument("--solid", action="store_true", help="filled grids instead of surface voxels")
        p.add_argument("--sparse", action="store_true", help="run the convolutions on the occupied voxels only")
        p.add_argument("--device", choices=device_choices, default="cpu")
    t.add_argument("--classes", help="comma-separated subset of the classes")
    t.add_argument("--per-class", type=positive(int), default=20, help="procedural training shapes per class")
    t.add_argument("--resolution", type=positive(int), default=32)
    t.add_argument("--epochs", type=positive(int), default=20)
    t.add_argument("--batch", type=positive(int), default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="voxnet_run", help="folder for the checkpoint, metrics and pictures")
    e.add_argument("--checkpoint", required=True)
    v.set_defaults(func=_cmd_voxnet)


def _cmd_voxnet(args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    if args.action == "train":
        result = train(args)
        print(f"test accuracy {result['test_voting']:.3f} (voting), {result['test_upright']:.3f} (upright); "
              f"written to {args.out}/")
    else:
        result = evaluate_checkpoint(args)
        print(json.dumps({k: result[k] for k in ("test_voting", "test_upright")}))
    return 0
