"""Memory layouts for the layout matrix and the fuzzing: the same values (or, for "expanded", values
repeated along one dimension) stored in each layout users hand to the ops.

Each test draws every input's layout independently: a kernel that reads one tensor with another's
strides (the CPU SSIM bug of issue 11) is then wrong for most combinations.
"""
import torch

LAYOUTS = ("contiguous", "channels_last", "permuted", "sliced", "expanded", "transposed")


def _filler(t: torch.Tensor):
    """What the gaps of a sliced layout hold: NaN for floats (a read outside the view shows up as a NaN
    result), a huge value for integers (an out-of-range map entry or site, which the ops reject)."""
    return float("nan") if t.is_floating_point() else torch.iinfo(t.dtype).max


def _stored_in_order(t: torch.Tensor, order) -> torch.Tensor:
    """t's values in storage whose dimensions run in `order` (outermost first), viewed back in t's order."""
    inverse = sorted(range(len(order)), key=lambda i: order[i])
    return t.permute(order).contiguous().permute(inverse)


def expand_dim(shape) -> int:
    """The dimension "expanded" repeats: the first one longer than 1 (stride 0 has an effect only there)."""
    return next((d for d, s in enumerate(shape) if s > 1), 0)


def with_layout(t: torch.Tensor, kind: str) -> torch.Tensor:
    """A tensor of t's shape and dtype in layout `kind`. All layouts hold t's values except "expanded",
    which holds t's first slice along expand_dim(t.shape) repeated with stride 0: compare against the
    reference on the returned tensor, not on t."""
    if kind == "contiguous":
        return t.contiguous()
    if kind == "channels_last":  # dim 1 innermost, as channels_last / channels_last_3d store images
        if t.dim() < 3:
            return _stored_in_order(t, list(range(1, t.dim())) + [0])
        return _stored_in_order(t, [0] + list(range(2, t.dim())) + [1])
    if kind == "permuted":  # every dimension reversed: the outermost is innermost in memory
        return _stored_in_order(t, list(reversed(range(t.dim()))))
    if kind == "transposed":  # the last two dimensions swapped in memory
        order = list(range(t.dim()))
        order[-2:] = order[-1], order[-2]
        return _stored_in_order(t, order)
    if kind == "sliced":  # every other element of a larger buffer, offset by one
        big = torch.full([2 * s + 1 for s in t.shape], _filler(t), dtype=t.dtype)
        view = big[tuple(slice(1, None, 2) for _ in t.shape)]
        view.copy_(t)
        return view
    if kind == "expanded":
        d = expand_dim(t.shape)
        return t.narrow(d, 0, 1).expand(t.shape)
    raise ValueError(f"unknown layout {kind!r}")
