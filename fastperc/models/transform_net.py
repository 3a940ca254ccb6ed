"""The image transformation network of feed-forward style transfer (Johnson et al. 2016), narrower by
default so that it trains on a CPU: reflection-padded convolutions with instance norm, two stride-2
downsamplings, residual blocks, two nearest-neighbour upsamplings (not transposed convolutions, which
leave checkerboard artefacts), a sigmoid to [0, 1]."""
from __future__ import annotations

import torch


class ConvLayer(torch.nn.Sequential):
    # No conv bias: the instance norm right after removes it (its gradient is rounding noise).
    def __init__(self, cin, cout, kernel, stride=1, relu=True):
        layers = [torch.nn.ReflectionPad2d(kernel // 2), torch.nn.Conv2d(cin, cout, kernel, stride, bias=False),
                  torch.nn.InstanceNorm2d(cout, affine=True)]
        super().__init__(*(layers + [torch.nn.ReLU()] if relu else layers))


class Residual(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = torch.nn.Sequential(ConvLayer(channels, channels, 3), ConvLayer(channels, channels, 3, relu=False))

    def forward(self, x):
        return x + self.body(x)


class TransformNet(torch.nn.Module):
    """width=32, blocks=5 is the paper's network; the default is a third of its width with 3 blocks.
    Instance norm is per image, so the network has no batch statistics to synchronise across ranks."""

    def __init__(self, width: int = 16, blocks: int = 3):
        super().__init__()

        def up(cin, cout):
            return torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="nearest"), ConvLayer(cin, cout, 3))

        self.net = torch.nn.Sequential(
            ConvLayer(3, width, 9), ConvLayer(width, 2 * width, 3, 2), ConvLayer(2 * width, 4 * width, 3, 2),
            *[Residual(4 * width) for _ in range(blocks)],
            up(4 * width, 2 * width), up(2 * width, width),
            torch.nn.ReflectionPad2d(4), torch.nn.Conv2d(width, 3, 9))

    def forward(self, x):
        return torch.sigmoid(self.net(x))
