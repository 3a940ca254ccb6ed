"""gradcheck / gradgradcheck of every op in float64, through the public API and the raw ops."""
import torch
from torch.autograd import gradcheck, gradgradcheck

import fastperc


def test_gradcheck_gram_matrix():
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda t: fastperc.gram_matrix(t, normalize="hw"), (x,))
    assert gradcheck(lambda t: torch.ops.fastperc.gram(t, 0.7), (x.flatten(2).detach().requires_grad_(True),))


def test_gradcheck_style_loss_features_and_target():
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    a = torch.randn(1, 6, 6, dtype=torch.float64, requires_grad=True)
    for normalize in ("chw", "gatys"):
        assert gradcheck(lambda t, g: fastperc.style_loss(t, g, normalize=normalize), (x, a))
    b = torch.randn(2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda t, g: fastperc.style_loss(t, g, reduction="sum"), (x, b))


def test_gradcheck_gram_backward_and_double_backward():
    x = torch.randn(2, 4, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda gg, xx: torch.ops.fastperc.gram_backward(gg, xx, 0.3), (g, x))
    assert gradgradcheck(lambda xx: fastperc.gram_matrix(xx), (x,))
    a = torch.randn(1, 4, 4, dtype=torch.float64)
    assert gradgradcheck(lambda xx: fastperc.style_loss(xx, a), (x,))
