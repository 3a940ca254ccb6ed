"""Perceptual (content) and VGG style losses against plain-PyTorch composites; kernels vs fallback."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from fastperc import _backend
from fastperc.losses import PerceptualLoss, VGGStyleLoss
from fastperc.models import FeatureExtractor, vgg16


def tiny_extractor(dtype=torch.float64):
    torch.manual_seed(0)
    layers = [("conv1", torch.nn.Conv2d(3, 5, 3, padding=1)), ("relu1", torch.nn.ReLU()),
              ("pool1", torch.nn.AvgPool2d(2)), ("conv2", torch.nn.Conv2d(5, 7, 3, padding=1)),
              ("relu2", torch.nn.ReLU())]
    state = {f"features.{i}.{k}": v for i, (_, m) in enumerate(layers) for k, v in m.state_dict().items()}
    return FeatureExtractor(layers, "tiny", weights=state).to(dtype)


@pytest.fixture(scope="module")
def vgg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vgg16(pool="avg")


def composite_style(features, style_features, weights):
    """Plain PyTorch: bmm Grams / (C H W), mean squared difference."""
    def gram(f):
        f = f.flatten(2)
        return torch.bmm(f, f.transpose(1, 2)) / (f.shape[1] * f.shape[2])
    return sum(w * F.mse_loss(gram(features[k]), gram(style_features[k]).expand(features[k].shape[0], -1, -1))
               for k, w in weights.items())


def test_perceptual_loss_is_the_feature_mse(vgg):
    x, t = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss = PerceptualLoss(("relu1_2", "relu2_2"), layer_weights=[0.5, 2.0], extractor=vgg)
    fx, ft = vgg(x, ["relu1_2", "relu2_2"]), vgg(t, ["relu1_2", "relu2_2"])
    want = 0.5 * F.mse_loss(fx["relu1_2"], ft["relu1_2"]) + 2.0 * F.mse_loss(fx["relu2_2"], ft["relu2_2"])
    assert torch.allclose(loss(x, t), want, rtol=1e-6)
    l1 = PerceptualLoss("relu2_2", criterion="l1", extractor=vgg)
    assert torch.allclose(l1(x, t), F.l1_loss(fx["relu2_2"], ft["relu2_2"]), rtol=1e-6)
    assert loss(x, x).item() == 0


def test_style_loss_matches_composite_forward_and_backward(vgg):
    layers = ("relu1_1", "relu2_1", "relu3_1")
    style = torch.rand(1, 3, 40, 40)
    loss = VGGStyleLoss(style, layers, layer_weights=[1.0, 0.5, 2.0], extractor=vgg)
    x1 = torch.rand(2, 3, 32, 32, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    got = loss(x1)
    want = composite_style(vgg(x2, layers), vgg(style, layers), dict(zip(layers, [1.0, 0.5, 2.0])))
    assert torch.allclose(got, want, rtol=1e-5)
    got.backward()
    want.backward()
    # float32 through VGG: gradients agree to 1e-4 of their largest entry
    assert ((x1.grad - x2.grad).abs().max() / x2.grad.abs().max()).item() < 1e-4


@pytest.mark.parametrize("normalize, reduction", [("chw", "mean"), ("gatys", "sum"), ("hw", "mean")])
def test_style_loss_gradcheck_and_fallback(normalize, reduction, monkeypatch):
    ext = tiny_extractor()
    style = torch.rand(1, 3, 10, 12, dtype=torch.float64)
    x = torch.rand(2, 3, 8, 10, dtype=torch.float64, requires_grad=True)
    loss = VGGStyleLoss(style, ("relu1", "relu2"), normalize=normalize, reduction=reduction, extractor=ext)
    assert torch.autograd.gradcheck(loss, (x,))
    kernel = loss(x)
    monkeypatch.setattr(_backend, "force_reference", True)
    reference = loss(x)
    assert torch.allclose(kernel, reference, rtol=1e-12)


def test_perceptual_gradcheck():
    ext = tiny_extractor()
    loss = PerceptualLoss(("relu1", "relu2"), extractor=ext)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    t = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: loss(a, t), (x,))


def test_bad_arguments(vgg):
    with pytest.raises(ValueError, match="no layer"):
        PerceptualLoss("relu9_9", extractor=vgg)
    with pytest.raises(ValueError, match="criterion"):
        PerceptualLoss(criterion="huber", extractor=vgg)
    with pytest.raises(ValueError, match="layer_weights"):
        PerceptualLoss(("relu1_2", "relu2_2"), layer_weights=[1.0], extractor=vgg)
    with pytest.raises(TypeError, match="FeatureExtractor"):
        PerceptualLoss(extractor=torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="at least one layer"):
        VGGStyleLoss(torch.rand(1, 3, 16, 16), layers=(), extractor=vgg)


def test_losses_compile_fullgraph():
    from fastperc.losses import psnr

    ext = tiny_extractor(torch.float32)
    style = VGGStyleLoss(torch.rand(1, 3, 16, 16), ("relu1", "relu2"), extractor=ext)
    content = PerceptualLoss(("relu2",), extractor=ext)

    def total(x, t):
        return style(x) + content(x, t) + psnr(x, t, 1.0)

    x, t = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    compiled = torch.compile(total, fullgraph=True)(x, t)
    (grad_compiled,) = torch.autograd.grad(compiled, x)
    eager = total(x, t)
    (grad_eager,) = torch.autograd.grad(eager, x)
    assert torch.allclose(compiled, eager, rtol=1e-6)
    assert torch.allclose(grad_compiled, grad_eager, rtol=1e-5, atol=1e-7)
