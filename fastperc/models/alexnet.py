"""AlexNet (Krizhevsky et al. 2012, torchvision's single-tower variant) convolutional layers.

Indices match torchvision's `alexnet().features`, so alexnet-owt-7be5be79.pth loads as it is.
"""
from __future__ import annotations

import torch

from fastperc.models.extractor import FeatureExtractor


def alexnet_layers():
    conv, relu, pool = torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool2d
    return [
        ("conv1", conv(3, 64, 11, stride=4, padding=2)), ("relu1", relu()), ("pool1", pool(3, 2)),
        ("conv2", conv(64, 192, 5, padding=2)), ("relu2", relu()), ("pool2", pool(3, 2)),
        ("conv3", conv(192, 384, 3, padding=1)), ("relu3", relu()),
        ("conv4", conv(384, 256, 3, padding=1)), ("relu4", relu()),
        ("conv5", conv(256, 256, 3, padding=1)), ("relu5", relu()), ("pool5", pool(3, 2)),
    ]


class AlexNet(FeatureExtractor):
    def __init__(self, weights=None, normalize_input: bool = True):
        super().__init__(alexnet_layers(), "AlexNet", weights, normalize_input)
