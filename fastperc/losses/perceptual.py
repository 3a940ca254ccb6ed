"""Feature losses over a backbone: the perceptual (content) loss of Johnson et al. 2016 and the
multi-layer Gatys et al. 2016 style loss, the latter on the fused Gram/style kernel.

Both take an `extractor` (any fastperc.models.FeatureExtractor) so that several losses share one
backbone; without one they build the VGG of `arch` with `weights` (a torchvision state_dict path,
or None for seeded random filters, with a warning). Images are (B, 3, H, W) in [0, 1].
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from fastperc.functional import _validate
from fastperc.models import VGG, FeatureExtractor
from fastperc.models.vgg import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS  # noqa: F401  (re-exported)
from fastperc.nn.style import StyleLoss

# Johnson et al. 2016: feature reconstruction at relu2_2 of VGG16; style at relu{1..4}_{2,2,3,3}.
JOHNSON_CONTENT_LAYERS = ("relu2_2",)
JOHNSON_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
# Gatys et al. 2016 (style at conv{1..5}_1 after ReLU, content at conv4_2, VGG19): GATYS_* in models.vgg.


def build_extractor(extractor, arch: str, weights, pool: str) -> FeatureExtractor:
    if extractor is not None:
        if not isinstance(extractor, FeatureExtractor):
            raise TypeError(f"extractor must be a fastperc.models.FeatureExtractor, got {type(extractor).__name__}")
        return extractor
    return VGG(arch, weights=weights, pool=pool)


def weights_per_layer(layers, weights) -> list[float]:
    if weights is None:
        return [1.0] * len(layers)
    if isinstance(weights, Mapping):
        if set(weights) != set(layers):
            raise ValueError(f"layer_weights keys {sorted(weights)} must match layers {list(layers)}")
        weights = [weights[k] for k in layers]
    weights = [float(w) for w in weights]
    if len(weights) != len(layers):
        raise ValueError(f"got {len(weights)} layer_weights for {len(layers)} layers")
    return weights


def as_layers(layers) -> tuple[str, ...]:
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    return layers


class PerceptualLoss(torch.nn.Module):
    """sum_l w_l * criterion(phi_l(x), phi_l(target)): the feature reconstruction loss of Johnson et
    al. 2016 (criterion "mse", the squared L2 distance over C*H*W; "l1" is also common)."""

    def __init__(self, layers=JOHNSON_CONTENT_LAYERS, layer_weights=None, criterion: str = "mse",
                 extractor=None, arch: str = "vgg16", weights=None, pool: str = "max"):
        super().__init__()
        self.layers = as_layers(layers)
        self.layer_weights = weights_per_layer(self.layers, layer_weights)
        self.criterion = _validate.choice(criterion, "criterion", ("mse", "l1"))
        self.extractor = build_extractor(extractor, arch, weights, pool)
        for name in self.layers:
            self.extractor.index_of(name)  # an unknown layer fails here, not at the first step

    def feature_loss(self, features: Mapping, target_features: Mapping) -> torch.Tensor:
        fn = F.mse_loss if self.criterion == "mse" else F.l1_loss
        return sum(w * fn(features[k], target_features[k].detach())
                   for k, w in zip(self.layers, self.layer_weights))

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.extractor(target, self.layers)
        return self.feature_loss(self.extractor(x, self.layers), target_features)


class VGGStyleLoss(torch.nn.Module):
    """Gatys et al. style loss of images x against a fixed style image, over several layers.

    The style image's Gram matrices are computed once; each step runs the backbone on x and the
    fused style_loss kernel per layer (forward and backward without a (B, C, C) autograd graph).
    normalize / reduction follow fastperc.style_loss ("chw" + "mean" is pytorch/examples';
    "gatys" + "sum" is the paper's E_l).
    """

    def __init__(self, style_image: torch.Tensor, layers=GATYS_STYLE_LAYERS, layer_weights=None,
                 normalize: str = "chw", reduction: str = "mean", extractor=None, arch: str = "vgg19",
                 weights=None, pool: str = "avg"):
        super().__init__()
        self.layers = as_layers(layers)
        self.extractor = build_extractor(extractor, arch, weights, pool)
        with torch.no_grad():
            style_features = self.extractor(style_image, self.layers)
        self.style = StyleLoss(style_features, weights_per_layer(self.layers, layer_weights), normalize, reduction)

    def feature_loss(self, features: Mapping) -> torch.Tensor:
        return self.style({k: features[k] for k in self.layers})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_loss(self.extractor(x, self.layers))
