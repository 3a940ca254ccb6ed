"""`fastperc texture`, `fastperc style` and `fastperc compare`: argument parsing and the user-facing
messages. Every problem the user can cause (a missing or unreadable file, an unknown layer, images
of different sizes, a bad weights file) ends in one line on stderr and exit status 2, no traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

from fastperc import distributed
from fastperc.image import ImageError, check_output_path, read_image, side_by_side, write_image

EXIT_USAGE = 2


def _say(command: str, message: str) -> None:
    """A note or error on stderr, from rank 0 only under torchrun (every rank would say the same)."""
    if distributed.is_main_process():
        print(f"fastperc {command}: {message}", file=sys.stderr)


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def _with_notes(command: str, build):
    """build(), with its warnings (random weights, missing LPIPS heads) printed as plain notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build()
    for w in caught:
        _say(command, f"note: {str(w.message).removeprefix('fastperc: ')}")
    return result


def _build_backbone(args, command: str):
    """The network of --arch: with "auto", VGG19 when --weights gives trained weights, else the random
    multi-scale texture network (a VGG with random filters gives speckled, tinted textures: RESULTS.md)."""
    from fastperc.models import VGG, RandomMultiScale

    arch = args.arch
    if arch == "auto":
        arch = "vgg19" if args.weights else "multiscale"
    if arch == "multiscale":
        if args.weights:
            raise ValueError("--arch multiscale has no trained weights (its random filters are the method); "
                             "--weights is for --arch vgg19 or vgg16")
        _say(command, "note: no --weights, so the texture statistics come from the random multi-scale network "
                      "(Ustyuzhaninov et al. 2017); --weights PATH to a torchvision VGG19 file for Gatys' VGG")
        return RandomMultiScale()
    return _with_notes(command, lambda: VGG(arch, weights=args.weights, pool=args.pool))


def _layers(text: str | None, extractor, option: str = "--layers", content: bool = False) -> tuple[str, ...]:
    """The layers named in text, or the backbone's defaults (its style or content layers) when None."""
    if text is None:
        from fastperc.apps.texture import default_layers

        return default_layers(extractor, None, "content_layers" if content else "style_layers")
    layers = tuple(s.strip() for s in text.split(",") if s.strip())
    for name in layers:
        extractor.index_of(name)
    if not layers:
        raise ValueError(f"{option} names no layer")
    return layers


def _add_optimisation_args(p, steps: int, size_help: str):
    p.add_argument("-o", "--output", required=True, help="image file to write (.png, .jpg, ...)")
    p.add_argument("--size", type=_positive(int), default=256, help=size_help + " (default: %(default)s)")
    p.add_argument("--steps", type=_positive(int), default=steps, help="optimisation steps (default: %(default)s)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--lr", type=_positive(float), help="step size (default 1 for L-BFGS, 0.02 for Adam)")
    p.add_argument("--weights", metavar="PTH", help="torchvision VGG state_dict (vgg19-dcbb9e9d.pth); "
                   "without it every network has seeded random filters (see --arch)")
    p.add_argument("--arch", choices=("auto", "multiscale", "vgg19", "vgg16"), default="auto",
                   help="auto: vgg19 with --weights, else multiscale, random filters built for texture statistics "
                   "(a VGG with random filters is the other choice without weights)")
    p.add_argument("--pool", choices=("avg", "max"), default="avg", help="VGG pooling (avg as Gatys et al.)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise start")
    p.add_argument("--strip", metavar="PNG", help="also write the inputs and intermediate results side by side")
    p.add_argument("--strip-count", type=_positive(int), default=4, help="intermediate results in --strip")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=_positive(int), help="torch.set_num_threads")


def _run_optimisation(args, command: str, run):
    """Shared by texture and style: threads, device, the progress line, writing the results."""
    from fastperc.apps.progress import Progress

    if args.threads:
        torch.set_num_threads(args.threads)
    check_output_path(args.output)
    if args.strip:
        check_output_path(args.strip)
    device = _device(args.device)
    snapshot_every = max(1, args.steps // (args.strip_count + 1)) if args.strip else 0
    image, losses, snapshots, inputs = run(device, Progress(command, args.steps), snapshot_every)
    write_image(image, args.output)
    print(f"wrote {args.output} ({image.shape[3]}x{image.shape[2]}); loss {losses[0]:.4e} -> {losses[-1]:.4e} "
          f"in {len(losses)} steps")
    if args.strip:
        write_image(side_by_side([t.cpu() for t in inputs + snapshots + [image]]), args.strip)
        print(f"wrote {args.strip}")
    return 0


def cmd_texture(args) -> int:
    from fastperc.apps.texture import synthesize_texture

    style, notes = read_image(args.style, max_side=args.style_size or args.size)
    for n in notes:
        _say("texture", f"{args.style}: {n}")
    extractor = _build_backbone(args, "texture")
    layers = _layers(args.layers, extractor)

    def run(device, progress, snapshot_every):
        ext, s = extractor.to(device), style.to(device)
        image, losses, snaps = synthesize_texture(s, ext, (args.size, args.size), args.steps, layers,
                                                  args.optimizer, args.lr, args.seed, progress, snapshot_every,
                                                  args.tv_weight, args.start)
        return image, losses, snaps, [style]

    return _run_optimisation(args, "texture", run)


def cmd_style(args) -> int:
    from fastperc.apps.style_transfer import transfer_style

    content, notes_c = read_image(args.content, max_side=args.size)
    style, notes_s = read_image(args.style, max_side=args.style_size or args.size)
    for path, notes in ((args.content, notes_c), (args.style, notes_s)):
        for n in notes:
            _say("style", f"{path}: {n}")
    extractor = _build_backbone(args, "style")
    style_layers = _layers(args.layers, extractor)
    content_layers = _layers(args.content_layers, extractor, "--content-layers", content=True)

    def run(device, progress, snapshot_every):
        ext = extractor.to(device)
        image, losses, snaps = transfer_style(
            content.to(device), style.to(device), ext, args.steps, args.content_weight, args.style_weight,
            args.tv_weight, content_layers, style_layers, args.init, args.optimizer, args.lr, args.seed,
            progress, snapshot_every, colour=args.colour)
        return image, losses, snaps, [content, style]

    return _run_optimisation(args, "style", run)


def cmd_compare(args) -> int:
    from fastperc.apps import compare
    from fastperc.apps.progress import Progress

    metrics = compare.parse_metrics(args.metrics)
    for path in (args.csv, args.json, args.map):
        if path:
            check_output_path(path)
    a_is_dir, b_is_dir = os.path.isdir(args.a), os.path.isdir(args.b)
    if a_is_dir != b_is_dir:
        raise ValueError(f"compare takes two image files or two folders; {args.a if a_is_dir else args.b} is a folder")
    if a_is_dir and args.map:
        raise ValueError("--map writes one image: give two image files, not folders")
    if "lpips" in metrics and not args.lpips_weights:
        raise ValueError("lpips needs trained backbone weights: pass --lpips-weights PTH (a torchvision "
                         "alexnet/vgg16/squeezenet1_1 state_dict, matching --lpips-net)")
    if a_is_dir:
        pairs, only_a, only_b = compare.folder_pairs(args.a, args.b)
        for name in only_a:
            _say("compare", f"note: {name} is only in {args.a}")
        for name in only_b:
            _say("compare", f"note: {name} is only in {args.b}")
        if not pairs:
            raise ImageError(f"no image files with the same name in {args.a} and {args.b}")
    else:
        pairs = [(f"{os.path.basename(args.a)} vs {os.path.basename(args.b)}", args.a, args.b)]
    # Every rank gets here with the same pairs (the checks above raise alike on every rank, before any
    # collective); under torchrun the ranks now join one job and share the pairs.
    device = distributed.setup(args.device)
    lpips_model = None
    if "lpips" in metrics:
        from fastperc.losses.lpips import LPIPS

        lpips_model = _with_notes("compare", lambda: LPIPS(args.lpips_net, weights=args.lpips_weights)).to(device)
    main = distributed.is_main_process()
    label = "compare" if not distributed.launched() else f"compare (rank 0 of {distributed.world_size()})"
    progress = Progress(label, len(distributed.shard(pairs)), unit="pairs") if main and len(pairs) > 1 else None
    try:
        results, error = compare.evaluate(pairs, metrics, lpips_model, device, progress, USER_ERRORS)
    finally:
        distributed.cleanup()
    if error is not None:
        raise ImageError(error)
    for r in results:
        for n in r.notes:
            _say("compare", f"note: {n}")
    if not main:
        return 0
    rows = [(r.name, r.values) for r in results]
    if len(rows) > 1:
        rows.append(("mean", compare.mean_values(results, metrics)))
    print(compare.format_table(rows, metrics))
    if args.csv:
        compare.write_csv(args.csv, results, metrics)
        print(f"wrote {args.csv} ({len(results)} pairs)")
    if args.json:
        compare.write_json(args.json, results, metrics, compare.mean_values(results, metrics))
        print(f"wrote {args.json} ({len(results)} pairs)")
    if args.map:
        a, b, _ = compare.load_pair(args.a, args.b)
        write_image(compare.ssim_map(a, b), args.map)
        print(f"wrote {args.map} (SSIM map, white = identical)")
    return 0


def add_parsers(sub) -> None:
    from fastperc.losses.perceptual import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS

    t = sub.add_parser("texture", help="Gatys texture synthesis from noise")
    t.add_argument("style", help="texture image to imitate")
    _add_optimisation_args(t, steps=200, size_help="side of the square output in pixels")
    t.add_argument("--style-size", type=_positive(int), help="longer side the texture is resized to (default --size)")
    t.add_argument("--layers", help="comma-separated style layers (default: every layer of multiscale; "
                   f"{','.join(GATYS_STYLE_LAYERS)} of VGG)")
    t.add_argument("--start", choices=("smooth", "noise"), default="smooth",
                   help="smooth: noise at 1/8 of the size, upsampled; noise: per pixel, as Gatys et al. "
                   "(default: %(default)s)")
    t.add_argument("--tv-weight", type=_non_negative_float, default=0.0,
                   help="total-variation weight: smooths pixel noise (default: %(default)s)")
    t.set_defaults(func=cmd_texture)

    s = sub.add_parser("style", help="Gatys style transfer")
    s.add_argument("content", help="image whose content is kept")
    s.add_argument("style", help="image whose style is imitated")
    _add_optimisation_args(s, steps=200, size_help="longer side of the output (the content is resized to it)")
    s.add_argument("--style-size", type=_positive(int), help="longer side the style image is resized to")
    s.add_argument("--layers", help="comma-separated style layers (default: every layer of multiscale; "
                   f"{','.join(GATYS_STYLE_LAYERS)} of VGG)")
    s.add_argument("--content-layers", help="comma-separated (default: multiscale scale1; VGG "
                   f"{','.join(GATYS_CONTENT_LAYERS)})")
    s.add_argument("--content-weight", type=_non_negative_float, default=1.0)
    s.add_argument("--style-weight", type=_non_negative_float, default=10.0)
    s.add_argument("--tv-weight", type=_non_negative_float, default=0.0, help="total-variation weight")
    s.add_argument("--init", choices=("content", "noise"), default="content")
    s.add_argument("--colour", choices=("style", "content"), default="style",
                   help="whose colours the result has: content = luminance-only transfer, Gatys et al. 2016 "
                   "(default: %(default)s)")
    s.set_defaults(func=cmd_style)

    c = sub.add_parser("compare", help="SSIM, MS-SSIM, PSNR, MAE, RMSE, LPIPS between two images or folders")
    c.add_argument("a", help="image file, or folder")
    c.add_argument("b", help="image file, or folder (files are paired by name)")
    c.add_argument("--metrics", default=",".join(("ssim", "ms-ssim", "psnr", "mae", "rmse")),
                   help="comma-separated, from ssim,ms-ssim,psnr,mae,rmse,lpips (default: %(default)s)")
    c.add_argument("--map", metavar="PNG", help="write the SSIM map as a grayscale image")
    c.add_argument("--csv", metavar="PATH", help="write every pair's metrics as CSV (pair, a, b, metrics)")
    c.add_argument("--json", metavar="PATH", help="write every pair's metrics and the means as JSON")
    c.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="where the metrics run; under torchrun, cuda means cuda:LOCAL_RANK (default: %(default)s)")
    c.add_argument("--lpips-net", choices=("alex", "vgg", "squeeze"), default="alex")
    c.add_argument("--lpips-weights", metavar="PTH", help="torchvision backbone state_dict for lpips")
    c.set_defaults(func=cmd_compare)


USER_ERRORS = (ImageError, ValueError, FileNotFoundError, FloatingPointError)
