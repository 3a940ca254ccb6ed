"""Bad input gets a clear error before any kernel runs: TypeError/ValueError from Python, and
RuntimeError naming the argument from the ops' own TORCH_CHECKs."""
import pytest
import torch

import fastperc

x = torch.randn(2, 4, 5, 6)
target = torch.randn(4, 4)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: fastperc.gram_matrix([[1.0]]), TypeError, "x must be a torch.Tensor"),
        (lambda: fastperc.gram_matrix(torch.ones(2, 3, 4, 5, dtype=torch.int32)), TypeError, "float16, bfloat16"),
        (lambda: fastperc.gram_matrix(torch.ones(2, 3, 4, dtype=torch.complex64)), TypeError, "complex64"),
        (lambda: fastperc.gram_matrix(torch.ones(2, 3, 4, dtype=torch.bool)), TypeError, "torch.bool"),
        (lambda: fastperc.gram_matrix(torch.randn(3, 4)), ValueError, r"\(B, C, H, W\) or \(B, C, N\), got shape \(3, 4\)"),
        (lambda: fastperc.gram_matrix(torch.randn(1, 2, 3, 4, 5)), ValueError, "got shape"),
        (lambda: fastperc.gram_matrix(torch.randn(0, 3, 4, 4)), ValueError, "B, C and spatial size > 0"),
        (lambda: fastperc.gram_matrix(torch.randn(2, 0, 4, 4)), ValueError, "> 0"),
        (lambda: fastperc.gram_matrix(torch.randn(2, 3, 0, 4)), ValueError, "> 0"),
        (lambda: fastperc.gram_matrix(x, normalize="CHW"), ValueError, "normalize must be one of"),
        (lambda: fastperc.style_loss(x, target, reduction="none"), ValueError, "reduction must be one of"),
        (lambda: fastperc.style_loss(x, target, normalize="paper"), ValueError, "normalize must be one of"),
        (lambda: fastperc.style_loss(x, "gram"), TypeError, "target_gram must be a torch.Tensor"),
        (lambda: fastperc.style_loss(x, torch.randn(5, 5)), ValueError, r"target_gram must be \(4, 4\)"),
        (lambda: fastperc.style_loss(x, torch.randn(3, 4, 4)), ValueError, r"\(2, 4, 4\)"),
        (lambda: fastperc.style_loss(x, torch.randn(4)), ValueError, "target_gram must be"),
        (lambda: fastperc.style_loss(x, torch.randn(4, 4, dtype=torch.float64)), TypeError, "must be torch.float32"),
        (lambda: fastperc.style_loss(x.half(), torch.randn(4, 4).half()), TypeError, "for torch.float16 features"),
        (lambda: fastperc.style_loss(x, torch.randn(4, 4, device="meta")), ValueError, "target_gram is on meta"),
    ],
)
def test_python_api_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: torch.ops.fastperc.gram(torch.randn(3, 4), 1.0), r"x must be \(B, C, N\), got 2 dimensions"),
        (lambda: torch.ops.fastperc.gram(torch.ones(1, 2, 3, dtype=torch.int64), 1.0), "x must be float16"),
        (lambda: torch.ops.fastperc.gram(torch.randn(0, 2, 3), 1.0), "B, C and N > 0"),
        (lambda: torch.ops.fastperc.gram(torch.randn(1, 2, 0), 1.0), "B, C and N > 0"),
        (lambda: torch.ops.fastperc.gram(torch.randn(1, 2, 3), float("nan")), "scale must be finite"),
        (lambda: torch.ops.fastperc.gram_backward(torch.randn(1, 3, 3), torch.randn(1, 2, 3), 1.0), r"grad must be \(1, 2, 2\)"),
        (lambda: torch.ops.fastperc.gram_backward(torch.randn(1, 2, 2).double(), torch.randn(1, 2, 3), 1.0), "grad must be Float"),
        (lambda: torch.ops.fastperc.gram_backward(torch.randn(2, 2, 2), torch.randn(1, 2, 3), 1.0), r"grad must be \(1, 2, 2\)"),
        (lambda: torch.ops.fastperc.style_loss(torch.randn(2, 2, 3), torch.randn(3, 2, 2), 1.0, 1.0), r"target must be \(1 or 2, 2, 2\)"),
        (lambda: torch.ops.fastperc.style_loss(torch.randn(2, 2, 3), torch.randn(2, 2), 1.0, 1.0), "target must be"),
        (lambda: torch.ops.fastperc.style_loss(torch.randn(2, 2, 3), torch.randn(1, 2, 2), 1.0, float("inf")), "loss_scale must be finite"),
    ],
)
def test_op_boundary_errors(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


def test_oversized_gram_is_a_clear_error_not_a_crash():
    # 300000 channels (no memory behind the expanded input): the (1, C, C) float32 result needs 360 GB.
    huge = torch.zeros(1, 1, 1).expand(1, 300_000, 1)
    with pytest.raises(RuntimeError, match="(?i)memory|allocat"):
        fastperc.gram_matrix(huge)
