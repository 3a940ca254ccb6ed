"""`fastperc bench`: fastperc kernels side by side with the pure-PyTorch reference, the plain torch
composite and the peer libraries users would otherwise pick, on the same inputs in one process.

Columns: median time; a rate (dense-equivalent GFLOP/s for the Gram ops: 2BC^2N forward, 6BC^2N
forward+backward, whatever the implementation does; megapixels/s = B*C*H*W (B*C*D*H*W voxels for ssim3d) per second for SSIM);
%peak (that rate over a square GEMM measured in the same run: gemm_peak); "fastperc speedup": this
row's time over fastperc's (how many times faster fastperc is); err: the largest deviation from a
float64 reference of the row's own convention on the same inputs (rounded to the benchmarked dtype),
relative to that reference's largest entry (the value for forward, the gradient of x for
forward+backward).
Peers are optional (peers_install_command() says how to install them keeping your torch); rows of
missing peers are skipped with a note.
"""
from __future__ import annotations

import importlib
import math
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from fastperc import _backend, reference
from fastperc.functional.gram import gram_matrix, style_loss
from fastperc.functional.ssim import l1_ssim_loss, ms_ssim, ssim, window_1d

# VGG-19 feature shapes (relu1_1 .. relu5_1 of a 256x256 or 512x512 image) and a batched one.
GRAM_SHAPES = [(1, 64, 256, 256), (1, 128, 128, 128), (1, 256, 64, 64), (1, 512, 32, 32), (8, 256, 64, 64)]
GRAM_QUICK = [(1, 64, 64, 64), (2, 128, 16, 16)]
IMAGE_SHAPES = {"cpu": [(1, 3, 512, 512), (8, 3, 256, 256), (1, 1, 1024, 1024)],
                "cuda": [(1, 3, 1080, 1920), (5, 3, 1080, 1920)]}
IMAGE_QUICK = [(1, 3, 96, 112)]
# Volumetric SSIM (medical volumes, 3D Gaussian splatting of volumes): one channel.
VOLUME_SHAPES = {"cpu": [(1, 1, 128, 128, 128), (4, 1, 64, 64, 64)],
                 "cuda": [(1, 1, 256, 256, 256), (4, 1, 128, 128, 128)]}
VOLUME_QUICK = [(1, 1, 24, 28, 32)]
MSSSIM_QUICK = [(1, 3, 192, 192)]
OPS = ("gram", "style", "ssim", "msssim", "l1ssim", "ssim3d")
# `fastperc bench` with no --op: the 2D families (a few minutes). ssim3d is asked for by name: its
# peers (kornia, torchmetrics) take tens of seconds per 3D forward+backward.
DEFAULT_OPS = ("gram", "style", "ssim", "msssim", "l1ssim")
MODES = ("fwd", "fwd+bwd")
GRAM_OPS = ("gram", "style")
# Time a call by how long its first (checked) run took: seconds-long peers once more, calls over 0.1 s
# three times more with no further warm-up, the fast ones interleaved with each other, for 0.3 s each
# and at least 5 rounds (time_interleaved_ms). This keeps the default bench at a few minutes on 2
# cores (most of its time is the slow peers and the reference).
SLOW_CALL_S = 2.0
WARM_CALL_S = 0.1

# An err above this marks a row's result as wrong, not rounded differently: every correct float32 row
# of these benches has stayed under 4e-5, while spconv's CPU forward on 2 threads (a race in its
# scatter: 26-38 of 125k output rows off, different ones each call) is at 0.2-0.34. Half-precision
# rows round at 1e-3 (float16) to 8e-3 (bfloat16) a step, so they get more room.
WRONG_ERR = {"float16": 0.1, "bfloat16": 0.1}
WRONG_ERR_OTHER = 1e-3


def wrong_result(row: dict, dtype: str = "float32") -> bool:
    """Whether the row's result was checked and found wrong (err above its dtype's WRONG_ERR, or NaN), or
    the row's own "wrong" where its bench judged it (bench_perceptual.step_wrong)."""
    if "wrong" in row:
        return row["wrong"]
    err = row.get("err")
    return err is not None and not err <= WRONG_ERR.get(dtype, WRONG_ERR_OTHER)


def wrong_flag(row: dict, dtype: str = "float32") -> str:
    """What a table line ends with: a loud mark for a wrong result, so no speedup over it goes unread."""
    return f"  WRONG RESULT (err above {WRONG_ERR.get(dtype, WRONG_ERR_OTHER):g})" if wrong_result(row, dtype) else ""


def _peer(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not installed, or fails to import beside this torch
        return None


# --- Gram and style loss ----------------------------------------------------------------------


def _torch_gram(x):
    """What users write (pytorch/examples): bmm in the features' dtype, divided by C*H*W."""
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def _ref_gram(x):
    f = x.flatten(2)
    return reference.gram(f, 1.0 / (f.shape[1] * f.shape[2]))


def _ref_style(x, target):
    f = x.flatten(2)
    return reference.style_loss(f, target, 1.0 / (f.shape[1] * f.shape[2]), 1.0 / (f.shape[0] * f.shape[1] ** 2))[0]


def _torch_style(x, target):
    return F.mse_loss(_torch_gram(x), target.to(x.dtype).expand(x.shape[0], -1, -1))


GRAM_IMPLS = {"gram": {"fastperc": gram_matrix, "reference": _ref_gram, "torch": _torch_gram},
              "style": {"fastperc": style_loss, "reference": _ref_style, "torch": _torch_style}}


# --- SSIM family: each implementation with the fastperc preset that reproduces it --------------


def _ssim_impls(volumetric: bool = False):
    """Each SSIM implementation with its preset; volumetric: the peers that take (B, C, D, H, W)."""
    pm, kornia, tm, piq = _peer("pytorch_msssim"), _peer("kornia"), _peer("torchmetrics.functional.image"), _peer("piq")
    impls = {
        "fastperc": ("pytorch_msssim", lambda x, y: ssim(x, y, 1.0)),
        "reference": ("pytorch_msssim", None),  # filled by _reference_call
    }
    if pm is not None:
        impls["pytorch_msssim"] = ("pytorch_msssim", lambda x, y: pm.ssim(x, y, data_range=1.0))
    if kornia is not None:
        kornia_ssim = kornia.metrics.ssim3d if volumetric else kornia.metrics.ssim
        impls["kornia"] = ("kornia", lambda x, y: kornia_ssim(x, y, 11).mean())
    if tm is not None:
        impls["torchmetrics"] = ("torchmetrics", lambda x, y: tm.structural_similarity_index_measure(x, y, data_range=1.0))
    if volumetric:  # piq and skimage's gaussian SSIM are 2D only
        return impls
    fused = _peer("fused_ssim")
    if fused is not None:  # CUDA only, float32, 11/1.5 gaussian with zero "same" padding (preset "fused_ssim")
        impls["fused_ssim"] = ("fused_ssim", lambda x, y: fused.fused_ssim(x, y, padding="same", train=True))
    if piq is not None:
        impls["piq"] = ("pytorch_msssim", lambda x, y: piq.ssim(x, y, data_range=1.0, downsample=False))
    skimage = _peer("skimage.metrics")
    if skimage is not None:
        def sk(x, y):
            vals = [skimage.structural_similarity(a.permute(1, 2, 0).cpu().numpy(), b.permute(1, 2, 0).cpu().numpy(),
                                                  data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                                  use_sample_covariance=False) for a, b in zip(x, y)]
            return torch.tensor(sum(vals) / len(vals), dtype=torch.float64)
        impls["skimage"] = ("skimage", sk)  # forward only (numpy)
    return impls


def _msssim_impls():
    # torchmetrics' MS-SSIM crops CS but not SSIM (README): no fastperc preset reproduces it, so its
    # error column would compare different quantities; it is left out.
    pm = _peer("pytorch_msssim")
    impls = {"fastperc": ("pytorch_msssim", lambda x, y: ms_ssim(x, y, 1.0)), "reference": ("pytorch_msssim", None)}
    if pm is not None:
        impls["pytorch_msssim"] = ("pytorch_msssim", lambda x, y: pm.ms_ssim(x, y, data_range=1.0))
    return impls


def _gs_ssim(img1, img2):
    """The 3D Gaussian Splatting loss_utils.ssim written with torch ops: zero 'same' gaussian conv."""
    c = img1.shape[1]
    g = window_1d(11, 1.5, "gaussian", img1.dtype, img1.device)
    w = (g[:, None] * g[None, :]).expand(c, 1, 11, 11).contiguous()
    mu1, mu2 = F.conv2d(img1, w, padding=5, groups=c), F.conv2d(img2, w, padding=5, groups=c)
    s1 = F.conv2d(img1 * img1, w, padding=5, groups=c) - mu1 * mu1
    s2 = F.conv2d(img2 * img2, w, padding=5, groups=c) - mu2 * mu2
    s12 = F.conv2d(img1 * img2, w, padding=5, groups=c) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (s1 + s2 + c2))).mean()


def _l1ssim_impls():
    impls = {"fastperc": ("3dgs", lambda x, y: l1_ssim_loss(x, y)), "reference": ("3dgs", None),
             "torch (3DGS code)": ("3dgs", lambda x, y: 0.8 * (x - y).abs().mean() + 0.2 * (1 - _gs_ssim(x, y)))}
    fused = _peer("fused_ssim")
    if fused is not None:  # the 3DGS training loss with fused-ssim's CUDA kernel
        impls["fused_ssim"] = ("3dgs", lambda x, y: 0.8 * (x - y).abs().mean()
                               + 0.2 * (1 - fused.fused_ssim(x, y, padding="same", train=True)))
    return impls


def _reference_call(op: str, preset: str):
    """The fastperc API on the pure-PyTorch reference, for a convention."""
    def call(x, y):
        old = _backend.force_reference
        _backend.force_reference = True
        try:
            if op in ("ssim", "ssim3d"):
                return ssim(x, y, 1.0, preset=preset)
            if op == "msssim":
                return ms_ssim(x, y, 1.0, preset=preset)
            return l1_ssim_loss(x, y, preset=preset)
        finally:
            _backend.force_reference = old
    return call


IMAGE_IMPLS = {"ssim": _ssim_impls, "msssim": _msssim_impls, "l1ssim": _l1ssim_impls, "ssim3d": lambda: _ssim_impls(volumetric=True)}


# --- cases --------------------------------------------------------------------------------------


@dataclass
class Case:
    op: str
    mode: str
    shape: tuple
    impl: str
    run: Callable[[], torch.Tensor]  # returns the checked result (value, or gradient of x)
    truth: Optional[Callable[[], torch.Tensor]] = field(default=None, repr=False)


def _gram_inputs(shape, device, dtype, rounded_to, seed=0):
    """x, an upstream gradient of its Gram (float64) and a style target: the same draws for every row."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(rounded_to).to(device=device, dtype=dtype)
    c = shape[1]
    grad_out = torch.randn((shape[0], c, c), generator=gen, dtype=torch.float64).to(device=device)
    target = gram_matrix(torch.randn((1,) + tuple(shape[1:]), generator=gen).to(device=device, dtype=dtype))
    return x, grad_out, target


def _gram_case(op, mode, shape, impl, device, dtype, rounded_to, seed=0):
    x, grad_out, target = _gram_inputs(shape, device, dtype, rounded_to, seed)
    fn = GRAM_IMPLS[op][impl]

    def forward(inp):
        return fn(inp) if op == "gram" else fn(inp, target.to(torch.float64) if inp.dtype == torch.float64 else target)

    if mode == "fwd":
        return lambda: forward(x)
    leaf = x.detach().requires_grad_(True)

    def forward_backward():
        leaf.grad = None
        out = forward(leaf)
        out.backward(grad_out.to(out.dtype) if op == "gram" else None)
        return leaf.grad

    return forward_backward


# The torch composite's products in a run capped below the CPU's best ISA, in the other GEMM library:
# oneDNN under ONEDNN_MAX_CPU_ISA, where the torch row's bmm is MKL under ISA_ENV's caps. Of the two, the
# faster is what the composite costs on a CPU of the capped ISA: the forward's product and the two of
# autograd's bmm backward (one per operand: gG @ F and gG^T @ F). The features are converted to
# oneDNN's layout before the clock starts, so the row is a lower bound on the composite's time.
CAPPED_GEMM = "torch, capped GEMM"


def _capped_gram_case(op, mode, shape, dtype, rounded_to, seed=0):
    x, grad_out, target = _gram_inputs(shape, "cpu", dtype, rounded_to, seed)
    b, c = shape[0], shape[1]
    feats = x.reshape(b, c, -1)
    scale = 1.0 / feats[0].numel()
    linear = torch.ops.aten.mkldnn_linear  # linear(a, w) = a @ w^T
    rows = [f.contiguous().to_mkldnn() for f in feats]
    columns = [f.t().contiguous().to_mkldnn() for f in feats]

    def grams():
        return [linear(f, f).to_dense() * scale for f in rows]

    if mode == "fwd":
        if op == "gram":
            return lambda: torch.stack(grams())
        return lambda: torch.stack([(g - target[0]).square().mean() for g in grams()]).mean()

    def forward_backward():
        gs = grams()  # the forward runs in a training step, whether or not its value is needed here
        if op == "gram":
            grads = [g.to(dtype) * scale for g in grad_out]
        else:  # mse_loss against the target, averaged over B C^2 entries
            grads = [2 * (g - target[0]) / (b * c * c) * scale for g in gs]
        return torch.stack([linear(g.to_mkldnn(), f_t).to_dense() + linear(g.t().contiguous().to_mkldnn(), f_t).to_dense()
                            for g, f_t in zip(grads, columns)]).reshape(shape)

    return forward_backward


def _image_case(op, mode, shape, fn, device, dtype, rounded_to, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    y = (x + 0.05 * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    x, y = (t.to(rounded_to).to(device=device, dtype=dtype) for t in (x, y))
    if mode == "fwd":
        return lambda: fn(x, y)
    leaf = x.detach().requires_grad_(True)

    def forward_backward():
        leaf.grad = None
        fn(leaf, y).backward()
        return leaf.grad

    return forward_backward


def _once(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """fn, computed on the first call only: the float64 truth of a convention serves every row using it."""
    memo = []

    def call():
        if not memo:
            memo.append(fn())
        return memo[0]

    return call


def cases(op: str, mode: str, shape: tuple, device: str, dtype=torch.float32):
    """Every implementation of (op, mode, shape) that can run here, each with its truth: the float64
    reference on the same inputs (rounded to dtype), so err measures the computation alone. The truth of
    a convention is computed once for all the rows that share it."""
    out = []
    if op in GRAM_OPS:
        truth = _once(_gram_case(op, mode, shape, "reference", device, torch.float64, dtype))
        for impl in GRAM_IMPLS[op]:
            out.append(Case(op, mode, shape, impl, _gram_case(op, mode, shape, impl, device, dtype, dtype), truth))
        if device == "cpu" and dtype == torch.float32 and capped_cpu_run() and torch.backends.mkldnn.is_available():
            out.append(Case(op, mode, shape, CAPPED_GEMM, _capped_gram_case(op, mode, shape, dtype, dtype), truth))
        return out
    truths = {}
    for impl, (preset, fn) in IMAGE_IMPLS[op]().items():
        if impl == "skimage" and (mode != "fwd" or device != "cpu"):
            continue
        if impl == "fused_ssim" and (device == "cpu" or dtype != torch.float32):  # its only kernel
            continue
        fn = fn or _reference_call(op, preset)
        if preset not in truths:
            truths[preset] = _once(_image_case(op, mode, shape, _reference_call(op, preset), device, torch.float64,
                                               dtype))
        truth = truths[preset]
        out.append(Case(op, mode, shape, impl, _image_case(op, mode, shape, fn, device, dtype, dtype), truth))
    return out


def _sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(fn: Callable, device: str, min_time: float = 0.3, min_runs: int = 5, max_runs: int = 200,
            best: bool = False, warmup: int = 2) -> float:
    """Median (or, with best=True, shortest) wall time of fn in milliseconds, after `warmup` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * (min(times) if best else statistics.median(times))


def time_interleaved_ms(fns: list, device: str, min_time: float = 0.3, min_runs: int = 5, max_runs: int = 200,
                        warmup: int = 2) -> list:
    """Median wall time of each of fns in milliseconds, timed in rounds that call every fn, each round
    starting one fn later than the last (so each fn follows each of the others), after `warmup` rounds.
    Timed one fn after another instead, in blocks of 0.3 s, the ratios between them moved with the
    machine's speed between blocks: on a shared VM the generic style loss measured 1.77-2.23x the
    capped composite in different runs of the same code. Interleaved, every fn sees the same
    conditions. Each timed call follows an untimed call of the same fn, so that it finds its own data
    in the caches, as the calls of a block did, rather than what the other fn left there. Rounds run
    until each fn has min_runs times and the rounds took min_time per fn (untimed calls included)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    _sync(device)
    times = [[] for _ in fns]
    start = time.perf_counter()
    rounds = 0
    while rounds < max_runs and (rounds < min_runs or time.perf_counter() - start < min_time * len(fns)):
        for i in range(len(fns)):
            k = (rounds + i) % len(fns)
            fns[k]()  # untimed: brings fn's data back into the caches
            _sync(device)
            t0 = time.perf_counter()
            fns[k]()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
        rounds += 1
    return [1e3 * statistics.median(t) for t in times]


def peak_memory_mb(fn, device) -> float:
    """MB above the starting footprint while fn runs once: the CUDA allocator's peak, or on the CPU the
    resident set's (Linux: /proc/self/status VmHWM after resetting it through /proc/self/clear_refs;
    allocations that reuse memory the process already holds do not show). nan where unmeasurable."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20
    try:
        def status(key):
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) for line in fh if line.startswith(key))
        start = status("VmRSS:")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current resident set
        fn()
        return (status("VmHWM:") - start) / 1024
    except (OSError, StopIteration):
        return float("nan")


def capped_cpu_run() -> bool:
    """Whether this process is a `--isa` run capped below the CPU's best ISA, GEMM libraries included
    (ISA_ENV's caps are set: x86 only)."""
    info = _backend.build_info()
    return info.get("cpu_isa_active") != info.get("cpu_isa_best") and "ONEDNN_MAX_CPU_ISA" in os.environ


def gemm_peak(device: str, dtype=torch.float32) -> tuple[float, str]:
    """(GFLOP/s, what measured it): the GEMM rate %peak divides by, the fastest of several square
    products. On the CPU in float32, the faster of torch.mm (MKL) and oneDNN's product: MKL's GEMM may
    not use the CPU's widest vectors (on a Zen 5 EPYC, torch.mm ran at half of oneDNN's AVX-512 rate), and
    %peak over the slower one would flatter every row. In a run capped below the CPU's best ISA (`--isa`,
    which caps oneDNN too), oneDNN's only, so that every capped table divides by the same library's rate
    under the same cap."""
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def rate(fn):
        return 2 * n**3 / time_ms(fn, device, min_runs=8, best=True) / 1e6

    onednn = None
    if device == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available():
        try:
            a_dnn, b_dnn = a.to_mkldnn(), b.to_mkldnn()
            onednn = rate(lambda: torch.ops.aten.mkldnn_linear(a_dnn, b_dnn))
        except (RuntimeError, AttributeError):  # a torch without oneDNN's linear: torch.mm, said so
            pass
    if onednn is not None and capped_cpu_run():
        return onednn, f"oneDNN under ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']}"
    mm = rate(lambda: torch.mm(a, b))
    if onednn is not None and onednn > mm:
        return onednn, f"oneDNN; torch.mm {mm:.0f}"
    return mm, "torch.mm"


def flops(op: str, mode: str, shape: tuple) -> float:
    """Useful floating-point operations of one call. Gram ops: 2BC^2N forward, 6BC^2N forward+backward
    (dense-equivalent, whatever the implementation does). SSIM ops (11-tap window, per pixel of each
    channel): the four moments SSIM needs (x, y, x^2 + y^2, xy: it takes the two variances only as
    their sum) filtered along each axis, 4 x 2 x 11 per axis, 4 to form the products and ~20 for
    SSIM/CS (2D: 200, 3D: 288); the backward adds ~40 for the moment gradients, the adjoint filter (as
    much as the forward's) and ~10 to combine; MS-SSIM sums its scales (4/3 of the first), L1 + SSIM
    adds 3. An implementation that recomputes or stores more is not credited for it (nor one that
    filters x^2 and y^2 apart: RESULTS.md figures before 2026-12-03's twelfth session counted five
    moments, 243 and 353)."""
    b, c = shape[0], shape[1]
    n = math.prod(shape[2:])
    if op in GRAM_OPS:
        return (2 if mode == "fwd" else 6) * b * c * c * n
    axes = len(shape) - 2
    filters = 4 * 2 * 11 * axes
    per_pixel = filters + 24 if mode == "fwd" else 2 * filters + 24 + 50
    scale = 4 / 3 if op == "msssim" else 1.0
    return (per_pixel + (3 if op == "l1ssim" else 0)) * b * c * n * scale


def default_shapes(op: str, device: str, quick: bool):
    if op in GRAM_OPS:
        return GRAM_QUICK if quick else GRAM_SHAPES
    if op == "msssim":
        return MSSSIM_QUICK if quick else IMAGE_SHAPES[device]
    if op == "ssim3d":
        return VOLUME_QUICK if quick else VOLUME_SHAPES[device]
    return IMAGE_QUICK if quick else IMAGE_SHAPES[device]


def cpu_isas(spec: str | None):
    """The CPU ISAs a --isa value names, lowest first: "all" = every one this CPU runs, or a
    comma-separated list; None = only the active one."""
    if spec is None:
        return None
    supported = _backend.build_info().get("cpu_isas", "").split(",")
    wanted = supported if spec == "all" else spec.split(",")
    unknown = [isa for isa in wanted if isa not in supported]
    if unknown:
        raise ValueError(f"--isa {spec}: this CPU runs {', '.join(supported)}; not {', '.join(unknown)}")
    return [isa for isa in supported if isa in wanted]


# What a CPU of each ISA runs, for every implementation in the process: fastperc's micro-kernels
# (FASTPERC_CPU_ISA), torch's own vectorised kernels (ATEN_CPU_CAPABILITY), MKL's GEMMs
# (MKL_ENABLE_INSTRUCTIONS) and oneDNN's convolutions (ONEDNN_MAX_CPU_ISA). Capping all of them makes
# an AVX-512 machine time the avx2 and generic paths against peers that run as they would on such a CPU.
# On AMD, MKL ignores MKL_ENABLE_INSTRUCTIONS and runs its AVX2 kernel (mkl_blas_def_sgemm_kernel_0_zen
# under perf, on a Zen 5 with AVX-512 too), which is what an avx2 or avx512 run there should time. For
# generic, its reproducibility branch MKL_CBWR=COMPATIBLE holds it to SSE2 on every vendor (perf: mulps
# and addps; torch.mm on one Zen 5 thread 111 -> 50 GFLOP/s), and spconv's products with it.
ISA_ENV = {
    "generic": {"FASTPERC_CPU_ISA": "generic", "ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "avx2": {"FASTPERC_CPU_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {"FASTPERC_CPU_ISA": "avx512", "ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
}
# On aarch64 every CPU has ASIMD, and both of fastperc's builds use it (generic through GCC's vectors):
# there is no lower ISA to hold torch's GEMM libraries to, and the x86 caps above name nothing there
# (a generic run once said its GEMM peak came from "oneDNN under ONEDNN_MAX_CPU_ISA=SSE41"). The
# generic run caps fastperc and torch's own kernels (no SVE); the products run as the CPU allows.
AARCH64_ISA_ENV = {"generic": {"FASTPERC_CPU_ISA": "generic", "ATEN_CPU_CAPABILITY": "default"}}


def isa_env(isa: str, machine: str | None = None) -> dict:
    """The environment of a `--isa` run of isa on this machine's architecture (platform.machine()):
    FASTPERC_CPU_ISA alone for an ISA no table names (neon, the best on aarch64)."""
    table = AARCH64_ISA_ENV if (machine or platform.machine()) in ("aarch64", "arm64") else ISA_ENV
    return table.get(isa, {"FASTPERC_CPU_ISA": isa})


def run_per_isa(bench_args, isas, json_dir: str) -> dict:
    """`fastperc bench BENCH_ARGS` once per ISA, each in a fresh process capped by isa_env (the caps
    take effect only when a library loads). Returns {isas, per_isa: {isa: result}}."""
    import json
    import os
    import subprocess
    import sys

    per_isa = {}
    for isa in isas:
        path = os.path.join(json_dir, f"bench-{isa}.json")
        env = dict(os.environ, **isa_env(isa))
        print(f"fastperc bench: timing every implementation as a {isa} CPU runs it ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "fastperc.cli", "bench", *bench_args, "--json", path], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        with open(path) as fh:
            per_isa[isa] = json.load(fh)
    return {"isas": list(isas), "per_isa": per_isa}


# Arm cores by /proc/cpuinfo's "CPU implementer" and "CPU part" (Linux's arch/arm64 cputype.h), for the
# aarch64 machines our users run: Linux names no model there.
ARM_CPU_PARTS = {
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0c"): "Neoverse N1",  # Graviton2, Ampere Altra
    ("0x41", "0xd40"): "Neoverse V1",  # Graviton3
    ("0x41", "0xd42"): "Cortex-A78AE",  # Jetson Orin
    ("0x41", "0xd49"): "Neoverse N2",
    ("0x41", "0xd4f"): "Neoverse V2",  # Grace (GH200), Graviton4
    ("0x41", "0xd84"): "Neoverse V3",
    ("0x41", "0xd8e"): "Neoverse N3",
    ("0x4e", "0x004"): "NVIDIA Carmel",  # Jetson Xavier
    ("0xc0", "0xac3"): "AmpereOne",
}


def cpu_model(cpuinfo: str | None = None, machine: str | None = None) -> dict:
    """The CPU's model name, the vector flags that pick the micro-kernels and the architecture (Linux
    /proc/cpuinfo, or the text given)."""
    info = {"model": platform.processor() or platform.machine(), "flags": "",
            "machine": machine or platform.machine()}
    try:
        text = cpuinfo if cpuinfo is not None else open("/proc/cpuinfo").read()
    except OSError:
        return info

    def field(key):
        hit = re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
        return hit.group(1).strip() if hit else None

    name, implementer, part = field("model name") or field("Model"), field("CPU implementer"), field("CPU part")
    if name:
        info["model"] = name
    elif part:
        implementer, part = (implementer or "?").lower(), part.lower()
        info["model"] = ARM_CPU_PARTS.get((implementer, part), f"Arm implementer {implementer} part {part}")
    flags = field("flags") or field("Features")
    if flags:
        wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "amx_bf16", "asimd",
                  "sve", "sve2")
        info["flags"] = " ".join(f for f in flags.split() if f in wanted)
    return info


def run(ops=DEFAULT_OPS, device: str = "cpu", quick: bool = False, dtype=torch.float32, min_time: float = 0.3):
    """Runs the comparison and returns {device, dtype, gemm_peak_gflops, gemm_peak_source, threads, cpu, isa,
    capability, rows, missing_peers}: isa is fastperc's active CPU micro-kernel ISA, capability torch's."""
    peak, peak_source = gemm_peak(device)
    rows = []
    for op in ops:
        for mode in MODES:
            for shape in default_shapes(op, device, quick):
                group = _measure_group(cases(op, mode, shape, device, dtype), op, mode, shape, device, quick,
                                       min_time, peak)
                fast = next(r["ms"] for r in group if r["impl"] == "fastperc")
                for row in group:
                    row["fastperc_speedup"] = row["ms"] / fast
                rows.extend(group)
    missing = [p for p in ("pytorch_msssim", "kornia", "torchmetrics", "piq", "skimage") if _peer(p) is None]
    loaded = _backend.extension_loaded()
    return {"device": device, "dtype": str(dtype).replace("torch.", ""), "gemm_peak_gflops": peak,
            "gemm_peak_source": peak_source, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "isa": _backend._C.cpu_isa() if loaded else None,
            "capability": torch.backends.cpu.get_cpu_capability(), "rows": rows, "missing_peers": missing}


def _measure_group(group, op, mode, shape, device, quick, min_time, peak) -> list:
    """The rows of one (op, mode, shape): each case's error from its first (checked) call, then the
    times. The fast cases are timed interleaved (time_interleaved_ms), so their ratios hold on a machine
    whose speed drifts; the slow ones (WARM_CALL_S) alone, as few times as their cost allows."""
    errors, firsts = [], []
    for case in group:
        truth = case.truth().double()
        start = time.perf_counter()
        result = case.run().double().to(truth.device)
        firsts.append(time.perf_counter() - start)
        errors.append(((result - truth).abs().max() / truth.abs().max().clamp_min(1e-300)).item())
    fast = [i for i, first in enumerate(firsts) if first <= WARM_CALL_S]
    ms = dict(zip(fast, time_interleaved_ms([group[i].run for i in fast], device,
                                            min_time=0.05 if quick else min_time)))
    for i, first in enumerate(firsts):
        if first > SLOW_CALL_S:  # a peer taking seconds per call (kornia's 3D SSIM): one more run
            ms[i] = time_ms(group[i].run, device, min_runs=1, max_runs=1, warmup=0)
        elif first > WARM_CALL_S:  # the first call was the warm-up; the median of 3 of these is steady enough
            ms[i] = time_ms(group[i].run, device, min_time=0.0, min_runs=3, max_runs=3, warmup=0)
    return [_row(case, op, mode, shape, ms[i], errors[i], peak) for i, case in enumerate(group)]


def _row(case, op, mode, shape, ms, err, peak) -> dict:
    row = dict(op=op, mode=mode, shape="x".join(map(str, shape)), impl=case.impl, ms=ms, err=err)
    row["gflops"] = flops(op, mode, shape) / ms / 1e6
    row["peak_pct"] = 100 * row["gflops"] / peak
    if op not in GRAM_OPS:
        row["mpx_s"] = math.prod(shape) / ms / 1e3
    return row


LEGEND = [
    "ms: median wall time of one call (forward, or forward+backward to the input's gradient); the rows of a "
    "shape timed interleaved, each timed call after an untimed one of its own (calls over 0.1 s alone).",
    "rate: Gram ops GFLOP/s counting 2BC^2N forward and 6BC^2N forward+backward (dense-equivalent: fastperc's "
    "symmetric Gram does about half the multiply-adds); SSIM ops Mpx/s = B*C*H*W (ssim3d: voxels) per second.",
    "%peak: the row's counted GFLOP/s (fastperc.bench.flops: what the op needs, not what an implementation does) "
    "over a square GEMM in this run (the faster of torch.mm and oneDNN's; oneDNN's in a run capped below the "
    "CPU's best ISA: see the head); it passes 100 where an implementation does less work than counted "
    "(the symmetric Gram computes one triangle).",
    f"{CAPPED_GEMM} (capped runs of the Gram ops): the torch composite's products in oneDNN under "
    "ONEDNN_MAX_CPU_ISA, beside the torch row's MKL under its own caps (CAPPED_GEMM in fastperc/bench.py).",
    "fastperc speedup: this row's ms over fastperc's (2.00x: fastperc is twice as fast; below 1: slower).",
    "err: largest |row - float64 reference of the row's own convention| over the reference's largest |value|, "
    "on the same inputs rounded to the benchmarked dtype.",
]


def format_table(result: dict) -> str:
    peak = result["gemm_peak_gflops"]
    head = f"device={result['device']} dtype={result['dtype']} threads={result['threads']}"
    if result["device"] == "cpu" and result.get("cpu"):
        cpu = result["cpu"]
        head += f" cpu={cpu['model']} ({cpu['flags']}) {cpu.get('machine', '')} fastperc isa={result.get('isa')}"
        head += f" torch capability={result.get('capability')}"
    if peak:
        head += f" GEMM peak ({result.get('gemm_peak_source', 'torch.mm')})={peak:.0f} GFLOP/s"
    cols = (f"{'op':<7}{'mode':<9}{'shape':<17}{'impl':<19}{'ms':>9}{'rate':>16}{'%peak':>7}"
            f"{'fastperc speedup':>18}{'err':>10}")
    lines = [head, cols, "-" * len(cols)]
    for r in result["rows"]:
        rate = f"{r['gflops']:.1f} GFLOP/s" if r["op"] in GRAM_OPS else f"{r['mpx_s']:.1f} Mpx/s"
        pct = f"{r['peak_pct']:.0f}" if "peak_pct" in r else "-"
        lines.append(f"{r['op']:<7}{r['mode']:<9}{r['shape']:<17}{r['impl']:<19}{r['ms']:>9.3f}{rate:>16}{pct:>7}"
                     f"{r['fastperc_speedup']:>17.2f}x{r['err']:>10.1e}" + wrong_flag(r, result["dtype"]))
    lines += LEGEND
    lines.extend(summary_lines(result))
    if result.get("missing_peers"):
        lines.append("peers not installed: " + ", ".join(result["missing_peers"]) + "; to add them and keep this torch: "
                     + peers_install_command(result["missing_peers"]))
    return "\n".join(lines)


# import name -> the package pip installs it from
PEER_PACKAGES = {"pytorch_msssim": "pytorch-msssim", "kornia": "kornia", "torchmetrics": "torchmetrics", "piq": "piq",
                 "skimage": "scikit-image", "spconv": "spconv", "lpips": "lpips", "fused_ssim": "fused-ssim"}
# A pip constraint pinning the torch that is installed: without it, a peer's newest release can pull another
# torch build (and the CUDA wheels) and break the extension built against the first one. The public
# version only ("2.13.0", not "2.13.0+cpu"): PEP 440 lets the installed local build satisfy it, while an
# index that has no "+cpu" build (PyPI) could never satisfy the pin with the label.
KEEP_TORCH = """-c <(python -c "import torch; print('torch==' + torch.__version__.split('+')[0])")"""


def peers_install_command(missing) -> str:
    """A bash command that installs the missing peers and keeps the installed torch."""
    return "pip install " + " ".join(PEER_PACKAGES.get(m, m) for m in missing) + " " + KEEP_TORCH


def _geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _comparison(op: str, names) -> str:
    """What fastperc was compared with, by name: torch's composite for the Gram ops; for the image ops
    the peers that ran (l1ssim has no peer on the CPU: the 3DGS code written with torch ops is the only
    comparison there, and it is named as such)."""
    names = sorted(set(names))
    if op in GRAM_OPS:
        return "torch (bmm + autograd)"
    if len(names) == 1:
        return names[0]
    return "the fastest of " + ", ".join(names)


def _ours(row) -> bool:
    """Whether a row times fastperc's kernels: "fastperc", or "fastperc sparse" (the VoxNet bench)."""
    return row["impl"] == "fastperc" or row["impl"].startswith("fastperc ")


def _others(rows):
    """The rows fastperc is compared with (not fastperc's own rows, not its pure-PyTorch reference, not a
    peer that failed to run)."""
    others = [r for r in rows if not _ours(r) and r["impl"] != "reference" and r["ms"] == r["ms"]]
    if rows and rows[0].get("op") in GRAM_OPS:
        others = [r for r in others if r["impl"] == "torch"]
    return others


def _groups(rows):
    """(op, mode, shape) -> rows, in the order measured (the perceptual bench's rows name a "what")."""
    out = {}
    for r in rows:
        out.setdefault((r.get("op", "step"), r.get("mode", r.get("what", "")), r["shape"]), []).append(r)
    return out


def _fastperc_ms(rows):
    ours = next((r for r in rows if _ours(r)), None)
    return None if ours is None else ours["ms"]


def _slower_pairs(isas, ms):
    """(lower ISA, higher ISA) pairs where the higher one took longer."""
    return [(lo, hi) for lo, hi in zip(isas, isas[1:]) if lo in ms and hi in ms and ms[hi] > ms[lo]]


def _isa_independent(rows):
    """Whether fastperc's row runs the same code under every ISA (a bench marks such rows, e.g. the
    kernel-map build): its ISAs are not compared, as any difference is noise."""
    return any(_ours(r) and r.get("isa_independent") for r in rows)


def _recheck_call(op, mode, shape, dtype, scan=None):
    """fastperc's call of a row, rebuilt for recheck_slower: the ops of this module, and the sparse
    convolution and Chamfer benches' rows; None for the others (the perceptual step, VoxNet, crops)."""
    if op in OPS:
        dims = tuple(int(n) for n in shape.split("x"))
        return next(c for c in cases(op, mode, dims, "cpu", dtype) if c.impl == "fastperc").run
    from fastperc import bench_chamfer, bench_sparse  # (they import this module)

    module = {"subm": bench_sparse, "chamfer": bench_chamfer}.get(op)
    return None if module is None else module.recheck_call(mode, shape, dtype, scan)


def recheck_slower(combined: dict, rounds: int = 7, min_time: float = 0.05, scan: str | None = None) -> dict:
    """Times fastperc's call again for every row where an ISA's run was slower than the ISA below, in this
    one process, switching the ISA between runs (fastperc._C.set_cpu_isa) round after round: a machine
    that slows down during one ISA's process (another tenant, a clock change) flags a row there but not
    here. Only fastperc's own CPU ISA changes here (torch is not capped); the rows are those
    _recheck_call rebuilds (scan: the subm bench's --scan). Adds combined["recheck"]: {"op|mode|shape":
    {isa: median ms}}."""
    isas, per_isa = combined["isas"], combined["per_isa"]
    dtype = getattr(torch, per_isa[isas[0]].get("dtype", "float32"))
    groups = {isa: _groups(per_isa[isa]["rows"]) for isa in isas}
    recheck = {}
    for key in groups[isas[0]]:
        op, mode, shape = key
        ms = {isa: _fastperc_ms(groups[isa].get(key, [])) for isa in isas}
        ms = {isa: v for isa, v in ms.items() if v is not None}
        if not _slower_pairs(isas, ms) or _isa_independent(groups[isas[0]][key]):
            continue
        call = _recheck_call(op, mode, shape, dtype, scan)
        if call is None:
            continue
        times = {isa: [] for isa in isas}
        active = _backend._C.cpu_isa()
        try:
            for _ in range(rounds):
                for isa in isas:
                    _backend._C.set_cpu_isa(isa)
                    times[isa].append(time_ms(call, "cpu", min_time=min_time, min_runs=3, warmup=1))
        finally:
            _backend._C.set_cpu_isa(active)
        recheck["|".join(key)] = {isa: statistics.median(v) for isa, v in times.items()}
    combined["recheck"] = recheck
    return recheck


def format_per_isa(combined: dict, table=None) -> str:
    """Each ISA's full table, then fastperc per ISA side by side with the fastest other implementation
    on the same (capped) CPU, and a flag wherever an ISA is slower than the one below it."""
    isas, per_isa = combined["isas"], combined["per_isa"]
    lines = []
    for isa in isas:
        lines += [f"=== as a {isa} CPU runs it ===", (table or format_table)(per_isa[isa]), ""]
    lines.append("fastperc per CPU ISA, side by side (x: times faster than the fastest other implementation "
                 "on the same capped CPU; %pk: of that run's GEMM, named in its table's head)")
    groups = {isa: _groups(per_isa[isa]["rows"]) for isa in isas}
    # the chamfer and voxnet benches name longer workloads than the image shapes
    w_op, w_mode, w_shape = (max([len(str(key[i])) + 1 for key in groups[isas[0]]] + [least])
                             for i, least in ((0, 7), (1, 9), (2, 17)))
    cols = (f"{'op':<{w_op}}{'mode':<{w_mode}}{'shape':<{w_shape}}"
            + "".join(f"{isa + ' ms':>12}{'%pk':>5}{'x':>10}" for isa in isas))
    lines += [cols, "-" * len(cols)]
    any_wrong = False
    for key in groups[isas[0]]:
        line = f"{key[0]:<{w_op}}{key[1]:<{w_mode}}{key[2]:<{w_shape}}"
        ms = {}
        for isa in isas:
            rows = groups[isa].get(key, [])
            ours = next((r for r in rows if _ours(r)), None)
            others = _others(rows)
            if ours is None:
                line += f"{'-':>27}"
                continue
            ms[isa] = ours["ms"]
            ratio = "-"
            if others:
                fastest = min(others, key=lambda r: r["ms"])
                wrong = wrong_result(fastest, per_isa[isa].get("dtype", "float32"))
                any_wrong |= wrong
                ratio = f"{fastest['ms'] / ours['ms']:.2f}x" + ("!" if wrong else "")
            pct = ours.get("peak_pct", float("nan"))
            line += f"{ours['ms']:>12.3f}{f'{pct:.0f}' if pct == pct else '-':>5}{ratio:>10}"
        lines.append(line)
        slower = [f"{hi} {ms[hi]:.2f} ms > {lo} {ms[lo]:.2f} ms" for lo, hi in _slower_pairs(isas, ms)]
        if _isa_independent(groups[isas[0]][key]):
            lines[-1] += "  (same code on every ISA)"
        elif slower:
            lines.append(f"    SLOWER THAN THE ISA BELOW: {'; '.join(slower)}")
            again = combined.get("recheck", {}).get("|".join(key))
            if again:
                still = _slower_pairs(isas, again)
                verdict = ("still slower: " + "; ".join(f"{hi} > {lo}" for lo, hi in still)) if still else "not slower"
                lines.append("    interleaved in one process: " + ", ".join(f"{isa} {v:.2f} ms" for isa, v in again.items())
                             + f" -> {verdict}")
    if any_wrong:
        lines.append("!: the fastest other implementation's result was wrong there (see WRONG RESULT in its table): "
                     "the ratio compares fastperc with a computation that does not give the right answer.")
    if table is None or table is format_table:
        for isa in isas:
            lines += [f"[{isa}] {line}" for line in summary_lines(per_isa[isa])]
    return "\n".join(lines)


def summary_lines(result: dict):
    """Per op and mode: geometric-mean speedup over torch (Gram ops) or over the fastest other
    implementation that is not fastperc's own reference (SSIM ops), naming what was compared."""
    out = []
    groups = _groups(result["rows"])
    for op in OPS:
        for mode in MODES:
            ratios, names, over_wrong = [], [], 0
            for key in (k for k in groups if k[0] == op and k[1] == mode):
                others = _others(groups[key])
                ours = [r for r in groups[key] if r["impl"] == "fastperc"]
                if others and ours:
                    fastest = min(others, key=lambda r: r["ms"])
                    ratios.append(fastest["ms"] / ours[0]["ms"])
                    over_wrong += wrong_result(fastest, result.get("dtype", "float32"))
                    names += [r["impl"] for r in others]
            if ratios:
                wrong = f"; {over_wrong} of {len(ratios)} over a WRONG RESULT" if over_wrong else ""
                out.append(f"fastperc {op} {mode}: geometric-mean speedup over {_comparison(op, names)} "
                           f"{_geomean(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x{wrong})")
            capped = [r["ms"] / _fastperc_ms(groups[k]) for k in groups if k[:2] == (op, mode)
                      for r in groups[k] if r["impl"] == CAPPED_GEMM]
            if capped:
                out.append(f"fastperc {op} {mode}: geometric-mean speedup over {CAPPED_GEMM} {_geomean(capped):.2f}x "
                           f"(min {min(capped):.2f}x, max {max(capped):.2f}x)")
    return out
