"""Loads fastperc._C once, says what was compiled, and picks the kernel or the reference per call.

The decision is a lookup in tables filled at import time, so it costs nothing per call and traces
under torch.compile without a graph break.
"""
from __future__ import annotations

import os

import torch

from fastperc import distributed

OPS = ("gram", "gram_backward", "style_loss", "ssim", "ssim_map", "ssim_backward",
       "sparse_kernel_map", "sparse_out_coords", "sparse_conv", "sparse_conv_backward", "knn_points",
       "knn_points_backward")
# Ops without a CUDA kernel (on CUDA tensors they would run the device-agnostic reference): none now.
CPU_ONLY_OPS: tuple = ()
DEVICE_KEYS = {"cpu": "CPU", "cuda": "CUDA"}

_C = None
load_error: str | None = None
if os.environ.get("FASTPERC_DISABLE_EXTENSION") == "1":
    load_error = "disabled by FASTPERC_DISABLE_EXTENSION=1"
else:
    try:
        from fastperc import _C  # noqa: F811  (registers torch.ops.fastperc.*)
    except ImportError as exc:  # not built, or built against another torch
        load_error = f"{type(exc).__name__}: {exc}"


def _registered(op: str, key: str) -> bool:
    return _C is not None and torch._C._dispatch_has_kernel_for_dispatch_key(f"fastperc::{op}", key)


# (op, device type) -> a compiled kernel is registered for it.
KERNELS = {(op, dev): _registered(op, key) for op in OPS for dev, key in DEVICE_KEYS.items()}

# Tests and benchmarks set this to run the pure-PyTorch reference through the public API.
force_reference = False
_warned: set = set()


def extension_loaded() -> bool:
    return _C is not None


def use_kernel(op: str, device: torch.device) -> bool:
    """True when the compiled kernel for `op` serves `device`; otherwise warn once and use the reference."""
    if not force_reference and KERNELS.get((op, device.type), False):
        return True
    if not force_reference and (op, device.type) not in _warned and not torch.compiler.is_compiling():
        _warned.add((op, device.type))
        reason = load_error or f"no {device.type} kernel was compiled"
        distributed.warn(
            f"fastperc: running the pure-PyTorch reference for '{op}' on {device.type} ({reason}); "
            "see fastperc.info()",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


def build_info() -> dict:
    return dict(_C.build_info()) if _C is not None else {}
