"""Backbone weights: torchvision-format state_dict files from a path the user gives, or seeded random.

Nothing is downloaded, ever. Without a file the backbone runs with He-initialised random filters
drawn from a fixed seed (the same on every machine and run), and says so with a warning: random
multi-scale filters still give usable textures (Ustyuzhaninov et al. 2017), which makes a working
offline default, but perceptual distances from them are not those of a trained network.
"""
from __future__ import annotations

import os

import torch

from fastperc import distributed

RANDOM_SEED = 0


def read_state_dict(source, what: str) -> dict:
    """A state_dict from a path (torch.save file) or a mapping; 'module.' prefixes are dropped."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip and format errors all mean the same to the user
            raise ValueError(f"{what} weights file {path} cannot be read: {_why_unreadable(path)} "
                             f"(torch.load: {err})") from None
    else:
        state = source
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what} weights must be a state_dict (a mapping of names to tensors)")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _why_unreadable(path: str) -> str:
    """What a file that torch.load refused most likely is, from its first bytes: torch.save writes a zip
    archive (or, before torch 1.6, a pickle starting with byte 0x80)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "it is a zip archive, as torch.save writes, but damaged or cut short (download it again)"
    if head[:1] == b"\x80":
        return "it is a pickle, as old torch.save writes, but damaged, cut short, or holding more than tensors"
    if head.lstrip()[:1] in (b"<", b"{"):
        return "it is a text file (an HTML error page or JSON saved in place of the weights?)"
    return "it is not a file torch.save writes"


def load_prefixed(module: torch.nn.Module, state: dict, prefix: str, what: str) -> None:
    """Copy state[prefix + name] into every parameter of module; other keys (a classifier) are ignored."""
    own = module.state_dict()
    missing = [k for k in own if prefix + k not in state]
    if missing:
        raise ValueError(f"{what} weights lack {len(missing)} tensors, e.g. {prefix + missing[0]!r} "
                         f"(expected a torchvision-format state_dict)")
    for k, v in own.items():
        got = state[prefix + k]
        if got.shape != v.shape:
            raise ValueError(f"{what} weight {prefix + k!r} has shape {tuple(got.shape)}, expected {tuple(v.shape)}")
    module.load_state_dict({k: state[prefix + k] for k in own})


def init_random(module: torch.nn.Module, what: str, warn: bool = True) -> None:
    """He-normal conv filters and zero biases from a fixed seed, independent of torch's global RNG."""
    gen = torch.Generator().manual_seed(RANDOM_SEED)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
    if warn:
        distributed.warn(f"fastperc: {what} has no weights file, so it runs with seeded random filters "
                         f"(fine for texture synthesis; not a trained network). For trained weights give a "
                         f"torchvision state_dict file: weights=PATH in Python, --weights PATH on the command "
                         f"line.", UserWarning, stacklevel=3)
