"""fastperc.info(): what is installed, compiled and used."""
from __future__ import annotations

import platform

import torch

from fastperc import _backend, distributed


def info(print_table: bool = True) -> dict:
    """Prints and returns version, torch, compiled backends (CPU ISA, CUDA archs), devices, and which
    ops run the pure-PyTorch reference (fallback) on which device."""
    from fastperc import __version__

    build = _backend.build_info()
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    fallback = sorted({f"{op}/{dev}" for (op, dev), ok in _backend.KERNELS.items() if not ok})
    values = {
        "fastperc": __version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "extension": "loaded" if _backend.extension_loaded() else f"not loaded ({_backend.load_error})",
        "cpu_kernels": bool(build),
        "cpu_isa": build.get("cpu_isa_active"),
        "cpu_isa_best": build.get("cpu_isa_best"),
        "cpu_isas": build.get("cpu_isas"),  # what FASTPERC_CPU_ISA may cap to on this CPU
        "openmp": build.get("openmp"),
        "threads": torch.get_num_threads(),
        "cuda_kernels": bool(build.get("cuda")),
        "cuda_archs": build.get("cuda_archs") or None,
        "devices": devices,
        "distributed": _distributed_state(),
        "reference_fallback": fallback,
    }
    if print_table:
        print(format_info(values))
    return values


def _distributed_state() -> str:
    """What torch.distributed offers here and where this process stands in a job."""
    if not torch.distributed.is_available():
        return "not available in this torch"
    backends = [name for name, ok in (("gloo", torch.distributed.is_gloo_available()),
                                      ("nccl", torch.distributed.is_nccl_available())) if ok]
    where = (f"rank {distributed.rank()} of {distributed.world_size()}" if distributed.launched()
             else "one process")
    if distributed.initialized():
        where += f" ({torch.distributed.get_backend()})"
    return f"{where}; backends {', '.join(backends) or 'none'}"


def format_info(values: dict) -> str:
    width = max(len(k) for k in values)
    lines = []
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value) or "none"
        lines.append(f"{key:<{width}}  {value}")
    return "\n".join(lines)
