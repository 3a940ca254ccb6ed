"""Optimising an image's pixels against a loss (Gatys et al.): L-BFGS or Adam, clamped to [0, 1]."""
from __future__ import annotations

import math

import torch

from fastperc.apps.progress import Progress

OPTIMIZERS = ("lbfgs", "adam")


def optimize_image(image: torch.Tensor, loss_fn, steps: int, optimizer: str = "lbfgs", lr: float | None = None,
                   progress: Progress | None = None, snapshot_every: int = 0):
    """Minimise loss_fn(image) over the pixels of image (modified in place, kept in [0, 1]).

    One step is one L-BFGS iteration (strong-Wolfe line search, a few loss evaluations) or one Adam
    update. Returns (losses per step, snapshots): snapshots are copies taken every snapshot_every
    steps (none when 0).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if optimizer == "lbfgs":
        # Tolerances at 0: the loss scale depends on the layers and weights, and an early stop on an
        # absolute tolerance would end a run the user asked to last `steps` steps.
        opt = torch.optim.LBFGS([image], lr=1.0 if lr is None else lr, max_iter=1, max_eval=20, history_size=50,
                                tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    elif optimizer == "adam":
        opt = torch.optim.Adam([image], lr=0.02 if lr is None else lr)
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    losses, snapshots = [], []

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(image)
        loss.backward()
        return loss

    for step in range(1, steps + 1):
        loss = float(opt.step(closure).detach())
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {step}; lower the learning rate or weights")
        losses.append(loss)
        if progress is not None:
            progress.update(step, loss)
        if snapshot_every and step % snapshot_every == 0 and step != steps:
            snapshots.append(image.detach().clone())
    return losses, snapshots
