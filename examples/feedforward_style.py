"""Feed-forward style transfer (Johnson et al. 2016): train a small image transformation network
with the perceptual (content) and style losses, both on one shared VGG16; on one process or
data-parallel over several with torchrun.

    python examples/feedforward_style.py [--style STYLE.png] [--images DIR] [--steps 300] [--size 64]
                                         [--weights vgg16-397923af.pth] [-o stylised.png]
    torchrun --nproc-per-node 2 examples/feedforward_style.py [same options]

Training images come from --images (every image file in the folder, random crops) or, without it,
are generated each step (smooth colour gradients with random shapes), so the script runs anywhere
with nothing downloaded. Without --style a disc texture is generated. Without --weights the VGG16
has seeded random filters (fastperc says so): the losses and the training loop are the real thing,
but the look of the result is not that of a trained VGG.

Loss per batch: content_weight * PerceptualLoss(relu2_2) + style_weight * style loss over
relu1_2, relu2_2, relu3_3, relu4_3 (fused fastperc Gram/style kernel) + tv_weight * TV
+ pixel_weight * (0.8 L1 + 0.2 (1 - SSIM)) to the input (fused kernel; 0 by default).
Writes a grid: the style image, then each test image above its stylised version.

Under torchrun the network runs under DistributedDataParallel (--compile puts torch.compile on top).
Every rank draws the same global batch of --batch images from the same seeded stream and keeps its
share (--batch must divide by the number of processes); every loss is a mean over the batch, so DDP's
gradient average is the combined batch's gradient, and N processes take exactly the steps one process
takes. Only rank 0 prints and writes files.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import torch

from fastperc import distributed
from fastperc.apps.patterns import discs
from fastperc.apps.texture import total_variation
from fastperc.image import ImageError, read_image, side_by_side, write_image
from fastperc.losses import PerceptualLoss, VGGStyleLoss
from fastperc.losses.perceptual import JOHNSON_CONTENT_LAYERS, JOHNSON_STYLE_LAYERS
from fastperc.models import TransformNet, vgg16
from fastperc.nn import L1SSIMLoss


def generated_images(batch, size, generator):
    """Smooth colour gradients with a few random rectangles and discs: content with edges and shapes."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(batch):
        a, b, c = torch.rand(3, 3, 1, 1, generator=generator)
        img = (a * xx + b * yy + c * (1 - xx)).clamp(0, 1) * 0.8 + 0.1
        for _ in range(4):
            cy, cx, r = torch.rand(3, generator=generator).tolist()
            colour = torch.rand(3, 1, 1, generator=generator)
            if torch.rand(1, generator=generator).item() < 0.5:
                mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < (0.05 + 0.2 * r) ** 2).float()
            else:
                mask = (((yy - cy).abs() < 0.05 + 0.15 * r) & ((xx - cx).abs() < 0.1 + 0.1 * r)).float()
            img = img * (1 - mask) + colour * mask
        out.append(img)
    return torch.stack(out)


def folder_images(folder, size):
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".webp")))
    if not files:
        raise ImageError(f"{folder}: no .png/.jpg/.jpeg/.bmp/.webp files")
    images = []
    for f in files:
        t, _ = read_image(os.path.join(folder, f), max_side=2 * size)
        if min(t.shape[2:]) >= size:
            images.append(t)
    if not images:
        raise ImageError(f"{folder}: no image has both sides >= {size} px after fitting into {2 * size} px")
    return images


def random_crops(images, batch, size, generator):
    crops = []
    for i in torch.randint(len(images), (batch,), generator=generator).tolist():
        t = images[i]
        y = torch.randint(t.shape[2] - size + 1, (1,), generator=generator).item()
        x = torch.randint(t.shape[3] - size + 1, (1,), generator=generator).item()
        crops.append(t[0, :, y:y + size, x:x + size])
    return torch.stack(crops)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--style", help="style image (default: a generated disc texture)")
    p.add_argument("--images", help="folder of training images (default: generated each step)")
    p.add_argument("--weights", help="torchvision vgg16 state_dict (default: seeded random filters)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=4, help="images per step, over all processes")
    p.add_argument("--size", type=int, default=64, help="training crop size")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=1e5)
    p.add_argument("--tv-weight", type=float, default=1e-3)
    p.add_argument("--pixel-weight", type=float, default=0.0, help="L1 + SSIM to the input image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="torch.compile the network (default backend inductor)")
    p.add_argument("--checkpoint", metavar="PT", help="write the trained network's state_dict here")
    p.add_argument("-o", "--output", default="stylised.png")
    args = p.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.size < 16:
        p.error("--steps and --batch must be >= 1 and --size >= 16")
    device = distributed.setup(args.device)
    if args.batch % distributed.world_size():
        p.error(f"--batch {args.batch} does not divide over {distributed.world_size()} processes")
    main_process = distributed.is_main_process()
    say = print if main_process else (lambda *a, **k: None)
    dtype = getattr(torch, args.dtype)
    # One data stream, the same on every rank: each keeps its share of the global batch.
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)  # the same initial network on every rank
    try:
        style = read_image(args.style, max_side=2 * args.size)[0] if args.style else discs(args.size)
        pool = folder_images(args.images, args.size) if args.images else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vgg = vgg16(args.weights).to(device, dtype)
    except (ImageError, ValueError, FileNotFoundError) as err:
        if main_process:
            print(f"feedforward_style: error: {err}", file=sys.stderr)
        return 2
    for w in caught:
        say(f"note: {w.message}", file=sys.stderr)
    content_loss = PerceptualLoss(JOHNSON_CONTENT_LAYERS, extractor=vgg)
    style_loss = VGGStyleLoss(style.to(device, dtype), JOHNSON_STYLE_LAYERS, extractor=vgg)
    pixel_loss = L1SSIMLoss(data_range=1.0)
    layers = tuple(dict.fromkeys(JOHNSON_CONTENT_LAYERS + JOHNSON_STYLE_LAYERS))
    net = TransformNet().to(device, dtype)
    if distributed.launched():
        net = torch.nn.parallel.DistributedDataParallel(net)
    trained = net.module if distributed.launched() else net
    step_net = torch.compile(net, backend=args.compile) if args.compile else net
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    mine = distributed.shard(range(args.batch))

    def batch():
        images = random_crops(pool, args.batch, args.size, gen) if pool else generated_images(args.batch, args.size, gen)
        return images.to(device, dtype)

    test_images = batch()
    start, first = time.perf_counter(), None
    for step in range(1, args.steps + 1):
        x = batch()[mine]
        y = step_net(x)
        with torch.no_grad():
            target = vgg(x, JOHNSON_CONTENT_LAYERS)
        feats = vgg(y, layers)  # one VGG pass serves both losses
        c = content_loss.feature_loss(feats, target)
        s = style_loss.feature_loss(feats)
        loss = args.content_weight * c + args.style_weight * s + args.tv_weight * total_variation(y)
        if args.pixel_weight:
            loss = loss + args.pixel_weight * pixel_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # The combined batch's loss: the mean of the ranks' (equal-sized) batch means.
        parts = distributed.all_reduce_mean(torch.stack([loss, c, s]).detach())
        total, c_mean, s_mean = parts.tolist()
        first = total if first is None else first
        if step == 1 or step % max(1, args.steps // 10) == 0 or step == args.steps:
            say(f"step {step:4d}/{args.steps}  loss {total:.6e}  content {c_mean:.3e}  "
                f"style {s_mean:.3e}  {step / (time.perf_counter() - start):.2f} steps/s", flush=True)
    say(f"loss {first:.4e} -> {total:.4e} in {args.steps} steps, {time.perf_counter() - start:.1f} s")
    if main_process:
        with torch.no_grad():
            stylised = trained(test_images)
        columns = [torch.cat([test_images[i:i + 1], stylised[i:i + 1]], 2) for i in range(len(test_images))]
        try:
            grid = side_by_side([torch.nn.functional.interpolate(style, size=(2 * args.size, 2 * args.size))]
                                + [c.float().cpu() for c in columns])
            write_image(grid, args.output)
        except ImageError as err:
            print(f"feedforward_style: error: {err}", file=sys.stderr)
            return 2
        print(f"wrote {args.output}")
        if args.checkpoint:
            torch.save(trained.state_dict(), args.checkpoint)
            print(f"wrote {args.checkpoint}")
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
