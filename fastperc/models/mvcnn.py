"""Multi-view CNN (Su et al., ICCV 2015): one CNN shared by every view, an element-wise max over the
views after the last convolution block (view pooling), then a classifier.

The paper used ImageNet-pretrained VGG-M at 224 px; offline there are no such weights, so the CNN here
is small (4 blocks of conv 3x3 + batch norm + ReLU + max-pool) and works at any size divisible by 16
(the tests and the CPU runs use 32-64 px renders of fastperc.geometry.render). The same network gives
the single-view baseline: `per_view` classifies each view alone, and the paper's evaluation of a
single-view CNN averages those scores over the views, so the gain of view pooling is measured on one
architecture.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class MVCNN(torch.nn.Module):
    def __init__(self, num_classes: int, image_size: int = 64, channels=(32, 64, 128, 256), in_channels: int = 1,
                 hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 (4 max-pools), got {image_size}")
        blocks, width = [], in_channels
        for c in channels:
            blocks += [torch.nn.Conv2d(width, c, 3, padding=1, bias=False), torch.nn.BatchNorm2d(c),
                       torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(2)]
            width = c
        self.features = torch.nn.Sequential(*blocks)
        self.image_size, self.in_channels = image_size, in_channels
        side = image_size // 16
        self.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(width * side * side, hidden),
                                              torch.nn.ReLU(inplace=True), torch.nn.Dropout(dropout),
                                              torch.nn.Linear(hidden, num_classes))

    def _view_features(self, views: torch.Tensor) -> torch.Tensor:
        if views.dim() == 4:  # (B, V, H, W) gray renders
            views = views[:, :, None]
        if views.dim() != 5 or views.shape[2] != self.in_channels or views.shape[-2:] != (self.image_size,) * 2:
            raise ValueError(f"views must be (B, V, {self.in_channels}, {self.image_size}, {self.image_size}), got "
                             f"{tuple(views.shape)}")
        b, v = views.shape[:2]
        # Renders are white (1) on the background: centred so the background is not the brightest input.
        f = self.features(views.flatten(0, 1) * 2 - 1)
        return f.reshape((b, v) + f.shape[1:])

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) of (B, V, C, H, W) (or (B, V, H, W)) views, pooled by max over V."""
        return self.classifier(self._view_features(views).amax(1))

    def per_view(self, views: torch.Tensor) -> torch.Tensor:
        """Logits (B, V, classes) of each view alone: the single-view CNN."""
        f = self._view_features(views)
        return self.classifier(f.flatten(0, 1)).reshape(f.shape[0], f.shape[1], -1)


def single_view_scores(net: MVCNN, views: torch.Tensor) -> torch.Tensor:
    """The paper's single-view evaluation: per-view class probabilities averaged over the views (B, classes)."""
    return F.softmax(net.per_view(views), -1).mean(1)
