"""VGG16 / VGG19 (Simonyan & Zisserman 2015) convolutional layers with named outputs.

Layer names follow the papers that use them: conv{block}_{i}, relu{block}_{i}, pool{block}. The
indices match torchvision's `vgg16().features` / `vgg19().features`, so their state_dict files
(vgg16-397923af.pth, vgg19-dcbb9e9d.pth) load as they are.
"""
from __future__ import annotations

import torch

from fastperc.functional import _validate
from fastperc.models.extractor import FeatureExtractor

# Gatys et al. 2016: style statistics from the first layer of each block, content from relu4_2.
GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
GATYS_CONTENT_LAYERS = ("relu4_2",)
CONVS_PER_BLOCK = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)


def vgg_layers(arch: str, pool: str):
    layers, cin = [], 3
    for block, (count, width) in enumerate(zip(CONVS_PER_BLOCK[arch], WIDTHS), start=1):
        for i in range(1, count + 1):
            layers.append((f"conv{block}_{i}", torch.nn.Conv2d(cin, width, 3, padding=1)))
            layers.append((f"relu{block}_{i}", torch.nn.ReLU()))
            cin = width
        # Gatys et al. replace max by average pooling for smoother gradients; the weights are the same.
        layers.append((f"pool{block}", torch.nn.MaxPool2d(2, 2) if pool == "max" else torch.nn.AvgPool2d(2, 2)))
    return layers


class VGG(FeatureExtractor):
    """VGG feature extractor. weights: None (seeded random, with a warning), a path to a torchvision
    state_dict, or a state_dict. pool: "max" (as trained) or "avg" (Gatys et al.)."""

    style_layers = GATYS_STYLE_LAYERS  # the defaults of texture synthesis and style transfer
    content_layers = GATYS_CONTENT_LAYERS

    def __init__(self, arch: str = "vgg19", weights=None, pool: str = "max", normalize_input: bool = True):
        _validate.choice(arch, "arch", tuple(CONVS_PER_BLOCK))
        _validate.choice(pool, "pool", ("max", "avg"))
        super().__init__(vgg_layers(arch, pool), arch.upper(), weights, normalize_input)
        self.arch = arch


def vgg16(weights=None, **kwargs) -> VGG:
    return VGG("vgg16", weights, **kwargs)


def vgg19(weights=None, **kwargs) -> VGG:
    return VGG("vgg19", weights, **kwargs)
