"""Fused style loss vs the formulas of each convention, forward and backward; the StyleLoss module."""
import pytest
import torch
import torch.nn.functional as F

import fastperc
from conftest import rel_err


def naive_gram(x):
    f = x.flatten(2)
    return torch.bmm(f, f.transpose(1, 2))


def convention(x, a, normalize, reduction):
    """The published formulas, written out with plain torch ops."""
    b, c = x.shape[:2]
    n = x[0, 0].numel()
    g = naive_gram(x)
    a = a.expand(b, c, c)
    if normalize == "gatys":
        per_item = ((g - a) ** 2).sum((1, 2)) / (4 * c**2 * n**2)
        return per_item.mean() if reduction == "mean" else per_item.sum()
    g = g / {"chw": c * n, "hw": n, "none": 1}[normalize]
    return F.mse_loss(g, a, reduction=reduction)


@pytest.mark.parametrize("normalize", ["chw", "hw", "none", "gatys"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("target_batch", [1, 3, None])
def test_conventions_forward_and_backward_float64(normalize, reduction, target_batch):
    torch.manual_seed(0)
    x = torch.randn(3, 11, 6, 7, dtype=torch.float64, requires_grad=True)
    a = torch.randn(target_batch or 1, 11, 11, dtype=torch.float64)
    a = (a + a.transpose(1, 2)) * 0.1
    if target_batch is None:
        a = a[0]  # (C, C)
    a.requires_grad_(True)
    loss = fastperc.style_loss(x, a, normalize=normalize, reduction=reduction)
    gx, ga = torch.autograd.grad(loss, (x, a))
    x2 = x.detach().clone().requires_grad_(True)
    a2 = a.detach().clone().requires_grad_(True)
    expected = convention(x2, a2, normalize, reduction)
    ex, ea = torch.autograd.grad(expected, (x2, a2))
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0)
    torch.testing.assert_close(gx, ex, rtol=1e-10, atol=1e-300)
    torch.testing.assert_close(ga, ea, rtol=1e-10, atol=1e-300)


def test_pytorch_examples_convention():
    # pytorch/examples fast_neural_style: mse_loss(gram(y), gram_style[:n]) with gram = bmm / (c h w)
    y = torch.randn(4, 16, 12, 12, dtype=torch.float64)
    style = torch.randn(1, 16, 12, 12, dtype=torch.float64)
    def ex_gram(t):
        b, c, h, w = t.size()
        f = t.view(b, c, w * h)
        return f.bmm(f.transpose(1, 2)) / (c * h * w)
    expected = F.mse_loss(ex_gram(y), ex_gram(style).repeat(4, 1, 1))
    got = fastperc.style_loss(y, fastperc.gram_matrix(style))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 1e-4), (torch.bfloat16, 1e-4)])
def test_low_precision_forward_and_backward(dtype, tol):
    # The loss and the Gram are float32; the gradient is rounded once to the features' dtype. Style
    # gradients are ~1e-9 here, below float16's range, so the loss is scaled as torch.amp.GradScaler would.
    loss_scale = 2.0**24
    torch.manual_seed(1)
    x64 = torch.randn(2, 40, 17, 19, dtype=torch.float64)
    x = x64.to(dtype).requires_grad_(True)
    a = fastperc.gram_matrix(torch.randn(1, 40, 17, 19)).to(torch.float32)
    loss = fastperc.style_loss(x, a)
    assert loss.dtype == torch.float32
    (loss * loss_scale).backward()
    xr = x.detach().double().requires_grad_(True)
    ref = convention(xr, a.double(), "chw", "mean")
    (ref * loss_scale).backward()
    assert rel_err(loss, ref) < tol
    grad_tol = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert x.grad.dtype == dtype
    assert rel_err(x.grad, xr.grad) < grad_tol


def test_identical_features_give_zero_loss_and_gradient():
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64, requires_grad=True)
    loss = fastperc.style_loss(x, fastperc.gram_matrix(x.detach()))
    loss.backward()
    assert loss.item() < 1e-28
    assert x.grad.abs().max().item() < 1e-14


def test_style_loss_module_several_layers():
    torch.manual_seed(2)
    style = [torch.randn(1, c, s, s, dtype=torch.float64) for c, s in [(8, 16), (16, 8), (32, 4)]]
    module = fastperc.StyleLoss(style, weights=[1.0, 0.5, 2.0])
    feats = [torch.randn(2, c, s, s, dtype=torch.float64, requires_grad=True) for c, s in [(8, 16), (16, 8), (32, 4)]]
    loss = module(feats)
    expected = sum(w * convention(f, fastperc.gram_matrix(t), "chw", "mean") for w, f, t in zip([1.0, 0.5, 2.0], feats, style))
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    loss.backward()
    assert all(f.grad is not None and torch.isfinite(f.grad).all() for f in feats)
    named = fastperc.StyleLoss({"relu1_1": style[0], "relu2_1": style[1]}, weights={"relu1_1": 1.0, "relu2_1": 0.5},
                               normalize="gatys", reduction="sum")
    got = named({"relu2_1": feats[1], "relu1_1": feats[0]})
    exp = convention(feats[0], naive_gram(style[0]), "gatys", "sum") + 0.5 * convention(feats[1], naive_gram(style[1]), "gatys", "sum")
    torch.testing.assert_close(got, exp, rtol=1e-12, atol=0)
    assert [t.shape for t in module.target_grams()] == [(1, 8, 8), (1, 16, 16), (1, 32, 32)]
    assert set(dict(module.named_buffers())) == {"target_0", "target_1", "target_2"}


def test_style_loss_module_bad_arguments():
    style = [torch.randn(1, 4, 5, 5)]
    with pytest.raises(ValueError, match="weights"):
        fastperc.StyleLoss(style, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        fastperc.StyleLoss([])
    with pytest.raises(TypeError, match="sequence or a mapping"):
        fastperc.StyleLoss(style[0])
    m = fastperc.StyleLoss(style)
    with pytest.raises(ValueError, match="1 layers"):
        m([torch.randn(1, 4, 5, 5)] * 2)
    with pytest.raises(ValueError, match="target_gram must be"):
        m([torch.randn(1, 5, 5, 5)])
    named = fastperc.StyleLoss({"a": style[0]})
    with pytest.raises(ValueError, match="lacks layers"):
        named({"b": style[0]})
