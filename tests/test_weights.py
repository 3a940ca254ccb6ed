"""Backbone weights without torchvision: seeded random filters, weight files (missing, damaged, of the
wrong net), input checks. Parity with torchvision's backbones: test_models.py."""
import warnings

import pytest
import torch

from fastperc import models
from fastperc.models import weights as model_weights


def test_random_weights_are_seeded_and_announced():
    with pytest.warns(UserWarning, match="seeded random filters"):
        a = models.vgg19()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(123)  # torch's global RNG must not matter
        b = models.vgg19()
    assert not a.pretrained
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    # He init keeps activations of O(1) through the depth: no vanishing signal at relu5_1.
    f = a(torch.rand(1, 3, 64, 64), ["relu5_1"])["relu5_1"]
    assert 1e-3 < f.abs().mean().item() < 10


def test_forward_stops_at_the_deepest_layer_and_keeps_order():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = models.vgg16(pool="avg")
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = net(x, ["relu2_2", "relu1_1"])
    assert list(out) == ["relu2_2", "relu1_1"]
    assert out["relu1_1"].shape == (1, 64, 32, 32) and out["relu2_2"].shape == (1, 128, 16, 16)
    out["relu2_2"].sum().backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())  # frozen backbone


def test_weight_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        models.vgg19(str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read: it is not a file torch.save writes"):
        models.vgg19(str(junk))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = models.vgg16().state_dict()
    # a download cut short: torch.load's own words ("pop from empty list" and the like) come with a reason
    torch.save(state, tmp_path / "full.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes((tmp_path / "full.pth").read_bytes()[:100_000])
    with pytest.raises(ValueError, match="zip archive, as torch.save writes, but damaged or cut short"):
        models.vgg16(str(cut))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="the file is empty"):
        models.vgg16(str(tmp_path / "empty.pth"))
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html>404</html>")
    with pytest.raises(ValueError, match="HTML error page"):
        models.vgg16(str(tmp_path / "page.pth"))
    with pytest.raises(ValueError, match="lack"):
        models.vgg19(state)  # VGG16 weights for a VGG19
    bad = dict(state)
    bad["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(ValueError, match="shape"):
        models.vgg16(bad)
    wrapped = {"state_dict": {"module." + k: v for k, v in state.items()}}
    assert models.vgg16(wrapped).pretrained
    with pytest.raises(ValueError, match="state_dict"):
        model_weights.read_state_dict({"a": 1}, "VGG16")


def test_input_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = models.AlexNet()
    with pytest.raises(ValueError, match="no layer 'relu9'"):
        net(torch.rand(1, 3, 64, 64), ["relu9"])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 64, 64), ["relu1"])
    with pytest.raises(ValueError, match="at least one layer"):
        net(torch.rand(1, 3, 64, 64), [])
    with pytest.raises(ValueError, match="float64"):
        net(torch.rand(1, 3, 64, 64, dtype=torch.float64), ["relu1"])
    with pytest.raises(ValueError, match="too small"):
        net(torch.rand(1, 3, 8, 8), ["relu5"])
    with pytest.raises(ValueError, match="arch"):
        models.VGG("vgg11")
