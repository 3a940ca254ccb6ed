"""SqueezeNet 1.1 (Iandola et al. 2016) convolutional layers.

Indices and parameter names match torchvision's `squeezenet1_1().features`, so
squeezenet1_1-b8a52dc0.pth loads as it is.
"""
from __future__ import annotations

import torch

from fastperc.models.extractor import FeatureExtractor


class Fire(torch.nn.Module):
    """1x1 squeeze, then 1x1 and 3x3 expands concatenated, each followed by ReLU."""

    def __init__(self, cin: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = torch.nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = torch.nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = torch.nn.Conv2d(squeeze, expand3x3, 3, padding=1)

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], 1)


def squeezenet_layers():
    pool = lambda: torch.nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return [
        ("conv1", torch.nn.Conv2d(3, 64, 3, stride=2)), ("relu1", torch.nn.ReLU()), ("pool1", pool()),
        ("fire2", Fire(64, 16, 64, 64)), ("fire3", Fire(128, 16, 64, 64)), ("pool3", pool()),
        ("fire4", Fire(128, 32, 128, 128)), ("fire5", Fire(256, 32, 128, 128)), ("pool5", pool()),
        ("fire6", Fire(256, 48, 192, 192)), ("fire7", Fire(384, 48, 192, 192)),
        ("fire8", Fire(384, 64, 256, 256)), ("fire9", Fire(512, 64, 256, 256)),
    ]


class SqueezeNet(FeatureExtractor):
    def __init__(self, weights=None, normalize_input: bool = True):
        super().__init__(squeezenet_layers(), "SqueezeNet 1.1", weights, normalize_input)
