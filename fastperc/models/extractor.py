"""A convolutional backbone as a flat list of named layers, laid out like torchvision's `features`.

The parameters live in `self.features` (an nn.Sequential), so a torchvision state_dict loads by its
own keys (features.0.weight, ...). forward(x, layers) returns the requested layers by name and stops
after the deepest one.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from fastperc.functional import _validate
from fastperc.models import weights as _weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NamedLayers(torch.nn.Module):
    """What every backbone shares: layers looked up by name, and the checks and ImageNet normalisation
    of the images given to forward(x, layers). Subclasses set `what` and `layer_names`."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def index_of(self, layer: str) -> int:
        try:
            return self.layer_names.index(layer)
        except ValueError:
            raise ValueError(f"{self.what} has no layer {layer!r}; it has {', '.join(self.layer_names)}") from None

    def requested(self, layers) -> tuple[list[str], dict[int, str]]:
        """(the names asked for, as a list; {layer index: name})."""
        layers = [layers] if isinstance(layers, str) else list(layers)
        if not layers:
            raise ValueError("layers must name at least one layer")
        return layers, {self.index_of(name): name for name in layers}

    def checked_images(self, x, like: torch.Tensor | None, normalize: bool = True) -> torch.Tensor:
        """x as (B, 3, H, W) float images on the device and in the dtype of `like` (a parameter or
        buffer of the network), ImageNet-normalised when asked."""
        x = _validate.float_tensor(x, "x")
        if x.dim() != 4 or x.shape[1] != 3 or x.numel() == 0:
            raise ValueError(f"x must be images (B, 3, H, W) with B, H, W > 0, got shape {tuple(x.shape)}")
        if like is not None and (x.device != like.device or x.dtype != like.dtype):
            raise ValueError(f"x is {x.dtype} on {x.device} but {self.what} is {like.dtype} on "
                             f"{like.device}; move one with .to()")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype) if normalize else x


class FeatureExtractor(NamedLayers):
    def __init__(self, named_layers, what: str, weights=None, normalize_input: bool = True):
        super().__init__()
        self.what = what
        self.layer_names = [name for name, _ in named_layers]
        self.features = torch.nn.Sequential(*[layer for _, layer in named_layers])
        self.normalize_input = normalize_input
        if weights is None:
            _weights.init_random(self.features, what)
            self.pretrained = False
        else:
            _weights.load_prefixed(self.features, _weights.read_state_dict(weights, what), "features.", what)
            self.pretrained = True
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Features of images x (B, 3, H, W) at the named layers, as a dict in the order asked for.

        With normalize_input, x is taken in [0, 1] and normalised with the ImageNet mean and std.
        """
        layers, wanted = self.requested(layers)
        weight = self.features[0].weight if isinstance(self.features[0], torch.nn.Conv2d) else None
        x = self.checked_images(x, weight, self.normalize_input)
        out = {}
        last = max(wanted)
        for i, layer in enumerate(self.features):
            try:
                x = layer(x)
            except RuntimeError as err:
                if "size" in str(err).lower():
                    raise ValueError(f"the image is too small for {self.what} at layer "
                                     f"{self.layer_names[i]!r}: {err}") from None
                raise
            if i in wanted:
                out[wanted[i]] = x
            if i == last:
                break
        return {name: out[name] for name in layers}
