"""torch.library.opcheck on every op (schema, fake kernel, autograd registration, AOT dispatch)."""
import pytest
import torch

OPS = {
    "gram": lambda rg, dt: (torch.randn(2, 5, 9, dtype=dt, requires_grad=rg), 0.25),
    "gram_backward": lambda rg, dt: (
        torch.randn(2, 5, 5, dtype=torch.float64 if dt == torch.float64 else torch.float32, requires_grad=rg),
        torch.randn(2, 5, 9, dtype=dt, requires_grad=rg),
        0.5,
    ),
    "style_loss": lambda rg, dt: (
        torch.randn(2, 5, 9, dtype=dt, requires_grad=rg),
        torch.randn(1, 5, 5, dtype=torch.float64 if dt == torch.float64 else torch.float32, requires_grad=rg),
        0.1,
        0.01,
    ),
}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(name, requires_grad, dtype):
    op = getattr(torch.ops.fastperc, name).default
    torch.library.opcheck(op, OPS[name](requires_grad, dtype))


def test_opcheck_channels_last_and_half():
    x = torch.randn(2, 6, 4, 5).contiguous(memory_format=torch.channels_last).flatten(2).half()
    torch.library.opcheck(torch.ops.fastperc.gram.default, (x, 1.0))
    torch.library.opcheck(torch.ops.fastperc.style_loss.default, (x, torch.randn(2, 6, 6), 1.0, 1.0))
