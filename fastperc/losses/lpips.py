"""LPIPS (Zhang et al. 2018), version 0.1, with the published normalisation.

d(x, y) = sum_l mean_hw || w_l * (u_l(x) - u_l(y)) ||^2, where u_l are a backbone's activations at
five (seven for SqueezeNet) layers, each unit-normalised over channels, and w_l the learned 1x1
"linear" heads. Inputs are shifted and scaled per channel by the 'scaling layer' of the lpips
package (not the ImageNet mean/std).

Weights, never downloaded: the backbone from a torchvision-format state_dict path (`weights=`;
without it, seeded random filters and a warning), the linear heads from `linear_weights=` (a path or
state_dict with keys lin{l}.model.1.weight, as the lpips package saves them) or else from the files
the `lpips` package ships when it is installed. With no heads at all every channel weighs 1 (the
package's lpips=False baseline) and a warning says so.
"""
from __future__ import annotations

import importlib.util
import os

import torch

from fastperc import distributed
from fastperc.functional import _validate
from fastperc.models import AlexNet, SqueezeNet, vgg16
from fastperc.models import weights as _weights

# name -> (backbone factory, tapped layers, their channels)
NETS = {
    "alex": (AlexNet, ("relu1", "relu2", "relu3", "relu4", "relu5"), (64, 192, 384, 256, 256)),
    "vgg": (vgg16, ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"), (64, 128, 256, 512, 512)),
    "squeeze": (SqueezeNet, ("relu1", "fire3", "fire5", "fire6", "fire7", "fire8", "fire9"),
                (64, 128, 256, 384, 384, 512, 512)),
}
SCALING_SHIFT = (-0.030, -0.088, -0.188)
SCALING_SCALE = (0.458, 0.448, 0.450)
UNIT_NORM_EPS = 1e-10


def packaged_linear_weights(net: str, version: str) -> str | None:
    """Path of the linear heads shipped in the installed lpips package, without importing it."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", f"v{version}", f"{net}.pth")
    return path if os.path.isfile(path) else None


def unit_normalize(f: torch.Tensor) -> torch.Tensor:
    return f / (f.square().sum(1, keepdim=True).sqrt() + UNIT_NORM_EPS)


class LPIPS(torch.nn.Module):
    """LPIPS distance. forward(x, y) with images (B, 3, H, W) in [-1, 1], or in [0, 1] when
    normalize=True (as the lpips package). reduction "mean" -> scalar, "none" -> (B,)."""

    def __init__(self, net: str = "alex", version: str = "0.1", weights=None, linear_weights=None,
                 reduction: str = "mean"):
        super().__init__()
        net = "vgg" if net == "vgg16" else net
        _validate.choice(net, "net", tuple(NETS))
        _validate.choice(version, "version", ("0.1",))
        self.reduction = _validate.choice(reduction, "reduction", ("mean", "none"))
        factory, self.layers, channels = NETS[net]
        self.net_name = net
        self.backbone = factory(weights=weights, normalize_input=False)
        self.register_buffer("shift", torch.tensor(SCALING_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALING_SCALE).view(1, 3, 1, 1), persistent=False)
        self.lins = torch.nn.ModuleList(torch.nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        source = linear_weights if linear_weights is not None else packaged_linear_weights(net, version)
        if source is None:
            with torch.no_grad():
                for lin in self.lins:
                    lin.weight.fill_(1.0)
            self.learned_heads = False
            distributed.warn("fastperc: LPIPS found no linear heads (install the lpips package or pass "
                             "linear_weights=PATH), so every channel weighs 1: the lpips=False baseline, "
                             "not LPIPS", UserWarning, stacklevel=2)
        else:
            state = _weights.read_state_dict(source, "LPIPS linear heads")
            for i, lin in enumerate(self.lins):
                _weights.load_prefixed(lin, state, f"lin{i}.model.1.", "LPIPS linear heads")
            self.learned_heads = True
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = _validate.float_tensor(x, "x")
        y = _validate.float_tensor(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        _validate.same_device(x, y, "x", "y")
        if x.dim() != 4 or x.shape[1] != 3 or x.numel() == 0:
            raise ValueError(f"x and y must be images (B, 3, H, W) with B, H, W > 0, got shape {tuple(x.shape)}")
        if normalize:  # [0, 1] -> [-1, 1]
            x, y = 2 * x - 1, 2 * y - 1
        batch = x.shape[0]
        both = torch.cat([x, y])
        both = (both - self.shift.to(both.dtype)) / self.scale.to(both.dtype)
        features = self.backbone(both, self.layers)
        total = None
        for lin, name in zip(self.lins, self.layers):
            f = unit_normalize(features[name])
            d = lin((f[:batch] - f[batch:]).square()).mean((2, 3)).flatten()
            total = d if total is None else total + d
        return total.mean() if self.reduction == "mean" else total
