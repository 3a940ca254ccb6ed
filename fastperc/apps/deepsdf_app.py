"""`fastperc deepsdf train|eval`: the DeepSDF auto-decoder over a set of shapes, their meshes back by
marching cubes, unseen test shapes reconstructed with the decoder frozen, DeepSDF's Chamfer evaluation
(with fastperc's exact Chamfer kernel), and pictures.

Shapes: the procedural ones (offline, the default) or a ModelNet-layout folder (--data). SDF samples
follow the paper (fastperc.geometry.sdf.sample_sdf). The defaults are sized for a CPU (latent 64,
width 256, 1024 samples per shape and step); --latent 256 --hidden 512 --batch 16384 is the paper's
network and batch. Writes to --out: deepsdf.pt (saved every 100 steps and resumed by running the same
command again), metrics.json (Chamfer per shape, mean and median, training and test), loss.png,
reconstructions.png (ground truth beside the decoded mesh, three views each) and interpolation.png
(meshes decoded along the line between two training codes). `eval` writes the same from a checkpoint,
without training; with the training run's options its metrics equal train's.
"""
from __future__ import annotations

import json
import os
import statistics
import sys

import torch
from PIL import Image

from fastperc.apps.plots import line_plot
from fastperc.apps.progress import Progress
from fastperc.apps.shape_data import load_run, load_split
from fastperc.geometry import sdf
from fastperc.geometry.render import render
from fastperc.models.deepsdf import (DeepSDF, auto_decoder_loss, chamfer_eval, interpolate, mesh, reconstruct,
                                     training_batch)

PICTURE_VIEWS = [(30.0, 30.0), (150.0, 30.0), (270.0, 30.0)]
SAVE_EVERY = 100
# The options of `train` a checkpoint keeps, so that `eval` can rebuild its shapes and network.
RUN_KEYS = ("data", "classes", "per_class", "test_per_class", "samples", "seed", "dropout")


def _tile(meshes, size: int) -> Image.Image:
    """One row per entry of meshes (a list of rows), each mesh from PICTURE_VIEWS; None leaves a blank."""
    rows, cols = len(meshes), max(len(r) for r in meshes) * len(PICTURE_VIEWS)
    sheet = Image.new("L", (cols * size, rows * size), 255)
    for i, row in enumerate(meshes):
        for j, m in enumerate(row):
            if m is None:
                continue
            views = render(m, PICTURE_VIEWS, size=size)["image"]
            for v, image in enumerate(views):
                tile = Image.fromarray((image.clamp(0, 1) * 255).round().byte().numpy(), "L")
                sheet.paste(tile, ((j * len(PICTURE_VIEWS) + v) * size, i * size))
    return sheet


def _decoded(decoder, code, resolution):
    try:
        return mesh(decoder, code, resolution)
    except ValueError:  # the decoded field does not cross zero (an untrained code): no surface
        return None


def train(args, out=sys.stderr) -> dict:
    generator = torch.Generator().manual_seed(args.seed)
    checkpoint = os.path.join(args.out, "deepsdf.pt")
    meshes, labels, names, test_meshes, test_labels = load_run(args)
    progress = Progress("SDF samples (training shapes)", len(meshes), out, unit="shapes")
    train_samples = []
    for i, m in enumerate(meshes):
        train_samples.append(sdf.sample_sdf(m.to(dtype=torch.float32), args.samples, generator))
        progress.update(i + 1)
    device = torch.device(args.device)
    decoder = DeepSDF(latent=args.latent, hidden=args.hidden, dropout=args.dropout).to(device)
    codes = torch.nn.Embedding(len(meshes), args.latent, max_norm=1.0).to(device)
    torch.nn.init.normal_(codes.weight, 0.0, 1.0 / args.latent ** 0.5)
    opt = torch.optim.Adam([{"params": decoder.parameters(), "lr": args.lr},
                            {"params": codes.parameters(), "lr": 2 * args.lr}])
    losses, first = [], 0
    if os.path.exists(checkpoint):
        state = torch.load(checkpoint, map_location=device)
        if state["shapes"] != len(meshes) or state["latent"] != args.latent or state["hidden"] != args.hidden:
            raise ValueError(f"{checkpoint} holds another set of shapes or another network; use another --out")
        decoder.load_state_dict(state["decoder"])
        codes.load_state_dict(state["codes"])
        opt.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        losses, first = state["losses"], state["step"]
        print(f"fastperc deepsdf: resuming {checkpoint} after step {first}", file=out)

    def save(step):
        torch.save({"decoder": decoder.state_dict(), "codes": codes.state_dict(), "optimizer": opt.state_dict(),
                    "generator": generator.get_state(), "losses": losses, "step": step, "shapes": len(meshes),
                    "latent": args.latent, "hidden": args.hidden, "classes": names,
                    "run": {key: getattr(args, key) for key in RUN_KEYS}}, checkpoint)

    decoder.train()
    progress = Progress("training", args.steps, out)
    for step in range(first, args.steps):
        loss = auto_decoder_loss(decoder, codes, *training_batch(train_samples, args.batch, generator), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        progress.update(step + 1, loss.item())
        if (step + 1) % SAVE_EVERY == 0 or step + 1 == args.steps:
            save(step + 1)
    decoder.eval()
    return _evaluate(args, decoder, codes.weight.detach(), meshes, labels, names, test_meshes, test_labels, losses,
                     out)


def evaluate_checkpoint(args, out=sys.stderr) -> dict:
    """`deepsdf eval`: the training shapes' meshes and Chamfer from a checkpoint's codes, and the unseen
    shapes reconstructed again (--recon-steps, --mesh-resolution and the test set may differ from the
    training run's; with the same ones the metrics equal those `train` wrote)."""
    state = torch.load(args.checkpoint, map_location=args.device)
    if "run" not in state:
        raise ValueError(f"{args.checkpoint} predates `deepsdf eval` (it does not name its shapes); train it again")
    run = state["run"]
    for key in ("data", "test_per_class"):  # the test set: this command's, or else the training run's
        if getattr(args, key) is None:
            setattr(args, key, run[key])
    args.samples, args.seed = run["samples"], run["seed"]
    args.steps, args.latent, args.hidden = state["step"], state["latent"], state["hidden"]
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    classes = run["classes"].split(",") if run["classes"] else None
    # the training shapes are the run's own (their codes are in the checkpoint), wherever --data points
    meshes, labels, names = load_split(run["data"], "train", run["per_class"], classes)
    test_meshes, test_labels, _ = load_split(args.data, "test", args.test_per_class, classes)
    decoder = DeepSDF(latent=args.latent, hidden=args.hidden, dropout=run["dropout"]).to(args.device)
    decoder.load_state_dict(state["decoder"])
    decoder.eval()
    codes = state["codes"]["weight"].to(args.device)
    print(f"fastperc deepsdf: {args.checkpoint}, step {state['step']}, {len(meshes)} training shapes", file=out)
    return _evaluate(args, decoder, codes, meshes, labels, names, test_meshes, test_labels, state["losses"], out)


def _test_samples(args, test_meshes, out):
    """SDF samples of the unseen shapes, from their own seeded stream: `eval` draws the same ones."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    progress = Progress("SDF samples (unseen shapes)", len(test_meshes), out, unit="shapes")
    samples = []
    for i, m in enumerate(test_meshes):
        samples.append(sdf.sample_sdf(m.to(dtype=torch.float32), args.samples, generator))
        progress.update(i + 1)
    return samples


def _evaluate(args, decoder, codes, meshes, labels, names, test_meshes, test_labels, losses, out):
    test_samples = _test_samples(args, test_meshes, out)
    generator = torch.Generator().manual_seed(args.seed + 2)  # the reconstructions' draws
    decoded, chamfer = [], []
    progress = Progress("meshes and Chamfer (training shapes)", len(meshes), out, unit="shapes")
    for i, m in enumerate(meshes):
        d = _decoded(decoder, codes[i], args.mesh_resolution)
        decoded.append(d)
        chamfer.append(chamfer_eval(d, m) if d is not None else float("inf"))
        progress.update(i + 1)
    test_decoded, test_chamfer = [], []
    progress = Progress("reconstructing unseen shapes", len(test_meshes), out, unit="shapes")
    for i, (m, (points, values)) in enumerate(zip(test_meshes, test_samples)):
        code = reconstruct(decoder, points, values, steps=args.recon_steps, generator=generator)
        d = _decoded(decoder, code, args.mesh_resolution)
        test_decoded.append(d)
        test_chamfer.append(chamfer_eval(d, m) if d is not None else float("inf"))
        progress.update(i + 1)

    def summary(values):
        finite = [v for v in values if v < float("inf")]
        return {"mean": statistics.fmean(finite) if finite else None,
                "median": statistics.median(finite) if finite else None, "no_surface": len(values) - len(finite)}

    result = {"classes": names, "steps": args.steps, "latent": args.latent, "hidden": args.hidden,
              "samples_per_shape": args.samples, "train_chamfer": summary(chamfer), "test_chamfer": summary(test_chamfer),
              "train_shapes": [{"class": names[int(c)], "chamfer": v} for c, v in zip(labels, chamfer)],
              "test_shapes": [{"class": names[int(c)], "chamfer": v} for c, v in zip(test_labels, test_chamfer)],
              "final_loss": losses[-1] if losses else None}
    with open(os.path.join(args.out, "metrics.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    if losses:
        line_plot({"clamped L1 + code regulariser": losses}, os.path.join(args.out, "loss.png"),
                  "DeepSDF training loss per step")
    shown = list(zip(test_meshes, test_decoded))[:4] or list(zip(meshes, decoded))[:4]
    _tile([[truth, rec] for truth, rec in shown], args.picture_size).save(os.path.join(args.out, "reconstructions.png"))
    other = next((j for j in range(len(meshes)) if labels[j] != labels[0]), min(1, len(meshes) - 1))
    strip = [_decoded(decoder, c, args.mesh_resolution) for c in interpolate(codes[0], codes[other], 5)]
    _tile([strip], args.picture_size).save(os.path.join(args.out, "interpolation.png"))
    return result


def add_parsers(sub, positive) -> None:
    d = sub.add_parser("deepsdf", help="DeepSDF (Park et al. 2019): train the auto-decoder, reconstruct, evaluate")
    actions = d.add_subparsers(dest="action", required=True)
    t = actions.add_parser("train", help="train on the procedural shapes (default) or --data, then evaluate")
    t.add_argument("--data", metavar="DIR", help="ModelNet10/40 or any <class>/{train,test}/*.off folder")
    t.add_argument("--classes", default="sphere,box,torus,cone,chair,table",
                   help="comma-separated classes (default: %(default)s)")
    t.add_argument("--per-class", type=positive(int), default=2, help="training shapes per class")
    t.add_argument("--test-per-class", type=positive(int), default=1, help="unseen shapes reconstructed per class")
    t.add_argument("--samples", type=positive(int), default=100_000, help="SDF samples per shape (paper: 500000)")
    t.add_argument("--steps", type=positive(int), default=1000)
    t.add_argument("--batch", type=positive(int), default=1024, help="samples per shape and step (paper: 16384)")
    t.add_argument("--latent", type=positive(int), default=64, help="code size (paper: 256)")
    t.add_argument("--hidden", type=positive(int), default=256, help="layer width (paper: 512)")
    t.add_argument("--dropout", type=float, default=0.2)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="deepsdf_run")
    e = actions.add_parser("eval", help="meshes, Chamfer and pictures from a checkpoint; unseen shapes reconstructed")
    e.add_argument("--checkpoint", required=True, help="deepsdf.pt written by `fastperc deepsdf train`")
    e.add_argument("--data", metavar="DIR", help="test shapes from this folder (default: the training run's)")
    e.add_argument("--test-per-class", type=positive(int), help="procedural test shapes per class (default: the "
                   "training run's)")
    e.add_argument("--out", default="deepsdf_eval", help="folder for metrics.json and the pictures")
    for p in (t, e):
        p.add_argument("--recon-steps", type=positive(int), default=800, help="Adam steps per unseen shape")
        p.add_argument("--mesh-resolution", type=positive(int), default=64, help="marching cubes grid (paper: 256)")
        p.add_argument("--picture-size", type=positive(int), default=96)
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    d.set_defaults(func=_cmd_deepsdf)


def _cmd_deepsdf(args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    result = train(args) if args.action == "train" else evaluate_checkpoint(args)
    tr, te = result["train_chamfer"], result["test_chamfer"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2e}"  # noqa: E731
    print(f"Chamfer (DeepSDF's metric): training shapes mean {fmt(tr['mean'])} median {fmt(tr['median'])}; unseen "
          f"shapes mean {fmt(te['mean'])} median {fmt(te['median'])}; written to {args.out}/")
    return 0
