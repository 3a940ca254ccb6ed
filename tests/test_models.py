"""Backbones written here against torchvision's, given the same weights file; weight handling."""
import warnings

import pytest
import torch

from fastperc import models
from fastperc.models import weights as model_weights

tv_models = pytest.importorskip("torchvision.models", reason="torchvision is in the [peers] extra")

# (ours, torchvision factory, {our layer: index in torchvision's features})
BACKBONES = [
    (lambda w: models.vgg16(w), tv_models.vgg16, {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "pool5": 30}),
    (lambda w: models.vgg19(w), tv_models.vgg19, {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20,
                                                  "relu4_2": 22, "relu5_1": 29, "relu5_4": 35}),
    (lambda w: models.AlexNet(w), tv_models.alexnet, {"relu1": 1, "relu2": 4, "relu3": 7, "relu4": 9, "relu5": 11}),
    (lambda w: models.SqueezeNet(w), tv_models.squeezenet1_1, {"relu1": 1, "fire3": 4, "fire5": 7, "fire6": 9,
                                                               "fire9": 12}),
]


def torchvision_features(tv_features, x, taps):
    out, inverse = {}, {i: name for name, i in taps.items()}
    for i, layer in enumerate(tv_features):
        x = layer(x.clone())  # torchvision's ReLUs are in place
        if i in inverse:
            out[inverse[i]] = x
        if i == max(inverse):
            break
    return out


@pytest.mark.parametrize("ours, theirs, taps", BACKBONES)
def test_matches_torchvision_from_its_state_dict_file(tmp_path, ours, theirs, taps):
    torch.manual_seed(0)
    tv = theirs().double().eval()
    path = tmp_path / "weights.pth"
    torch.save(tv.state_dict(), path)  # the classifier's keys are in the file too, and ignored
    net = ours(str(path)).double()
    assert net.pretrained
    x = torch.rand(2, 3, 64, 80, dtype=torch.float64)
    got = net(x, list(taps))
    normalized = (x - net.mean.double()) / net.std.double()
    with torch.no_grad():
        want = torchvision_features(tv.features, normalized, taps)
    assert list(got) == list(taps)
    for name in taps:
        assert torch.allclose(got[name], want[name], rtol=1e-12, atol=1e-12), name


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
    with pytest.raises(ValueError, match="not a torch state_dict"):
        models.vgg19(str(junk))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = models.vgg16().state_dict()
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
