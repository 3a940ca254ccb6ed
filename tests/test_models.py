"""Backbones written here against torchvision's, given the same weights file (weight handling without
torchvision: test_weights.py)."""
import pytest
import torch

from fastperc import models

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
