"""Argument checks of the public functions: clear Python errors before any kernel runs."""
from __future__ import annotations

import numbers

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def float_tensor(value, name: str) -> torch.Tensor:
    value = tensor(value, name)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {value.dtype}")
    return value


def choice(value, name: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def same_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{name_b} is on {b.device} but {name_a} is on {a.device}")



def is_real(value) -> bool:
    """A real number: Python or NumPy (np.float32(1.0) from an image pipeline is one), never a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def is_integer(value) -> bool:
    """An integer: Python or NumPy (np.int64 from a config array is one), never a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)
