"""LPIPS against the lpips package itself, given the same (seeded random) backbone weights."""
import warnings

import pytest
import torch

from fastperc.losses import LPIPS
from fastperc.losses.lpips import packaged_linear_weights

lpips = pytest.importorskip("lpips", reason="lpips is in the [peers] extra, which CI installs")
tv_models = pytest.importorskip("torchvision.models")

TORCHVISION = {"alex": tv_models.alexnet, "vgg": tv_models.vgg16, "squeeze": tv_models.squeezenet1_1}


def pair_of_models(net, tmp_path, seed=0):
    """Ours loading a torchvision weights file; the package's with the same backbone tensors."""
    torch.manual_seed(seed)
    features = TORCHVISION[net]().features.state_dict()
    path = tmp_path / f"{net}.pth"
    torch.save({"features." + k: v for k, v in features.items()}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation of `pretrained`
        theirs = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    backbone = theirs.net.state_dict()  # keys slice{k}.{features index}.weight
    theirs.net.load_state_dict({k: features[k.split(".", 1)[1]] for k in backbone})
    ours = LPIPS(net, weights=str(path), reduction="none")
    assert ours.learned_heads
    return ours, theirs


def images(shape, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype) * 2 - 1
    return x, (x + 0.3 * torch.randn(shape, generator=g, dtype=dtype)).clamp(-1, 1)


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_same_value_and_gradient_as_the_lpips_package(net, tmp_path):
    ours, theirs = pair_of_models(net, tmp_path)
    x, y = images((2, 3, 64, 64))
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = ours(x1, y), theirs(x2, y).flatten()
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-7)
    got.sum().backward()
    want.sum().backward()
    assert torch.allclose(x1.grad, x2.grad, rtol=1e-5, atol=1e-8)
    # [0, 1] inputs with normalize=True, as the package's forward(normalize=True)
    a, b = (x + 1) / 2, (y + 1) / 2
    assert torch.allclose(ours(a, b, normalize=True), theirs(a, b, normalize=True).flatten(), rtol=1e-6, atol=1e-7)


def test_float64_agrees_tightly(tmp_path):
    ours, theirs = pair_of_models("alex", tmp_path)
    x, y = images((1, 3, 48, 40), dtype=torch.float64)
    assert torch.allclose(ours.double()(x, y), theirs.double()(x, y).flatten(), rtol=1e-12)


def test_identical_images_score_zero_and_reduction(tmp_path):
    ours, _ = pair_of_models("alex", tmp_path)
    x, y = images((3, 3, 64, 64))
    assert torch.all(ours(x, x) == 0)
    ours.reduction = "mean"
    assert torch.allclose(ours(x, y), LPIPS("alex", weights=str(tmp_path / "alex.pth"), reduction="none")(x, y).mean())


def test_linear_heads_from_a_path_and_without_any(tmp_path, monkeypatch):
    path = packaged_linear_weights("alex", "0.1")
    assert path is not None  # the package ships them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_path = LPIPS("alex", linear_weights=path)
        default = LPIPS("alex")
    for a, b in zip(from_path.lins, default.lins):
        assert torch.equal(a.weight, b.weight)
    monkeypatch.setattr("fastperc.losses.lpips.packaged_linear_weights", lambda net, version: None)
    with pytest.warns(UserWarning, match="lpips=False baseline"):
        plain = LPIPS("alex")
    assert not plain.learned_heads
    x, y = images((1, 3, 64, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lpips.LPIPS(net="alex", lpips=False, pnet_rand=True, verbose=False)
    features = plain.backbone.features.state_dict()
    theirs.net.load_state_dict({k: features[k.split(".", 1)[1]] for k in theirs.net.state_dict()})
    assert torch.allclose(plain(x, y), theirs(x, y).flatten().mean(), rtol=1e-6)


def test_bad_input(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LPIPS("alex")
        with pytest.raises(ValueError, match="net"):
            LPIPS("resnet")
        with pytest.raises(ValueError, match="version"):
            LPIPS("alex", version="0.0")
        with pytest.raises(ValueError, match="lack"):
            LPIPS("alex", linear_weights={"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)})
    x, y = images((1, 3, 64, 64))
    with pytest.raises(ValueError, match="same shape"):
        model(x, y[..., :32])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(x[:, :1], y[:, :1])
    with pytest.raises(TypeError, match="float"):
        model(x.long(), y.long())
