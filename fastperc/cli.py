"""The `fastperc` console script: info, bench, texture, style, compare."""
from __future__ import annotations

import argparse
import json
import sys

import torch

from fastperc import distributed
from fastperc.apps import commands, deepsdf_app, mvcnn_app, voxnet_app

# Commands that split their work over the processes of a torchrun job; the others are one-process
# commands, and under a launcher every rank would redo the same work and write the same files.
DISTRIBUTED_COMMANDS = ("compare",)


def _cmd_info(args) -> int:
    import fastperc

    fastperc.info()
    return 0


def _report(result: dict, format_table, json_path) -> int:
    print(format_table(result))
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


def _cmd_bench(args) -> int:
    from fastperc import bench

    if args.device == "cuda" and not torch.cuda.is_available():
        print("fastperc bench: --device cuda asked for, but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.isa:
        return _bench_per_isa(args)
    if args.op == "perceptual":
        from fastperc import bench_perceptual

        return _report(bench_perceptual.run(device=args.device, quick=args.quick), bench_perceptual.format_table,
                       args.json)
    if args.op == "voxnet":
        from fastperc import bench_voxnet

        return _report(bench_voxnet.run(quick=args.quick, device=args.device), bench_voxnet.format_table, args.json)
    if args.op == "chamfer":
        from fastperc import bench_chamfer

        return _report(bench_chamfer.run(quick=args.quick, device=args.device, dtype=getattr(torch, args.dtype)),
                       bench_chamfer.format_table, args.json)
    if args.op == "subm":
        from fastperc import bench_sparse

        dtype = getattr(torch, args.dtype)
        if args.device == "cpu" and dtype not in (torch.float32, torch.float64):
            print(f"fastperc bench --op subm: the CPU kernels take float32 or float64, not {args.dtype}", file=sys.stderr)
            return 2
        return _report(bench_sparse.run(quick=args.quick, scan=args.scan, device=args.device, dtype=dtype),
                       bench_sparse.format_table, args.json)
    ops = bench.DEFAULT_OPS if args.op == "all" else (args.op,)
    dtype = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
             "bfloat16": torch.bfloat16}[args.dtype]
    return _report(bench.run(ops=ops, device=args.device, quick=args.quick, dtype=dtype), bench.format_table, args.json)


def _bench_per_isa(args) -> int:
    import tempfile

    from fastperc import bench, bench_chamfer, bench_perceptual, bench_sparse, bench_voxnet

    if args.device != "cpu":
        print("fastperc bench: --isa caps the CPU kernels; it needs --device cpu", file=sys.stderr)
        return 2
    try:
        isas = bench.cpu_isas(args.isa)
    except ValueError as err:
        print(f"fastperc bench: {err}", file=sys.stderr)
        return 2
    table = {"subm": bench_sparse.format_table, "perceptual": bench_perceptual.format_table,
             "chamfer": bench_chamfer.format_table, "voxnet": bench_voxnet.format_table}.get(args.op, bench.format_table)
    with tempfile.TemporaryDirectory() as tmp:
        combined = bench.run_per_isa(_bench_args(args), isas, tmp)
    print("fastperc bench: timing any row flagged slower than the ISA below again, ISAs interleaved ...",
          file=sys.stderr, flush=True)
    bench.recheck_slower(combined, min_time=0.02 if args.quick else 0.05, scan=args.scan)
    return _report(combined, lambda result: bench.format_per_isa(result, table), args.json)


def _bench_args(args):
    """The options of this bench call, without --isa and --json: what each per-ISA run repeats."""
    out = ["--op", args.op, "--device", args.device, "--dtype", args.dtype]
    if args.scan:
        out += ["--scan", args.scan]
    if args.quick:
        out.append("--quick")
    if args.threads:
        out += ["--threads", str(args.threads)]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastperc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, torch, compiled backends, devices").set_defaults(func=_cmd_info)
    b = sub.add_parser("bench", help="kernels vs reference vs torch composite, as a table")
    b.add_argument("--op", choices=("gram", "style", "ssim", "msssim", "l1ssim", "ssim3d", "subm", "perceptual",
                                    "chamfer", "voxnet", "all"),
                   default="all", help="all = the Gram and 2D SSIM families; ssim3d = volumes; subm = sparse convolution on a "
                   "LiDAR scan; perceptual = a VGG19 style-transfer step; chamfer = nearest neighbours / Chamfer distance; "
                   "voxnet = dense vs sparse VoxNet per grid resolution")
    b.add_argument("--scan", metavar="NPZ", help="point cloud for --op subm: an .npz with key 'pc' (metres) or 'pc_cm' "
                   "(centimetres), or 'synthetic' (default: the LiDAR scan shipped with fastperc, 196k points)")
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    b.add_argument("--dtype", choices=("float32", "float64", "float16", "bfloat16"), default="float32")
    b.add_argument("--quick", action="store_true", help="small shapes, short timing (a smoke run)")
    b.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's)")
    b.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    b.add_argument("--isa", metavar="all|ISA[,ISA]", help="CPU: run the bench once per ISA (all = every one this CPU runs: "
                   "generic, avx2, avx512 / generic, neon), fastperc and torch/MKL/oneDNN capped alike, side by side")
    b.set_defaults(func=_cmd_bench)
    commands.add_parsers(sub)
    voxnet_app.add_parsers(sub, commands._positive)
    mvcnn_app.add_parsers(sub, commands._positive)
    deepsdf_app.add_parsers(sub, commands._positive)
    args = parser.parse_args(argv)
    say = commands._say  # on stderr, from rank 0 only under torchrun
    if distributed.launched() and args.command not in DISTRIBUTED_COMMANDS:
        say(args.command, f"error: runs in one process; under torchrun only {', '.join(DISTRIBUTED_COMMANDS)} "
            "splits its work over the ranks (run it with plain python)")
        return commands.EXIT_USAGE
    try:
        return args.func(args)
    except commands.USER_ERRORS as err:
        say(args.command, f"error: {err}")
        return commands.EXIT_USAGE
    except KeyboardInterrupt:
        say(args.command, "interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
