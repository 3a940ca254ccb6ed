"""Multi-layer Gatys style loss over target Gram matrices."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fastperc.functional.gram import GRAM_NORMALIZE, REDUCTIONS, STYLE_NORMALIZE, gram_matrix, style_loss
from fastperc.functional import _validate


class StyleLoss(torch.nn.Module):
    """L = sum_l alpha_l * E_l over several feature layers, each E_l a fused style_loss.

    target_features: the style image's features, a sequence of tensors or a mapping name -> tensor,
    each (B_t, C, H, W) or (B_t, C, N) with B_t = 1 (broadcast) or the batch size used in forward.
    Their Gram matrices are computed once and kept as buffers. weights: alpha_l, one per layer (same
    order or same keys), default 1. forward takes features with the same structure.
    """

    def __init__(self, target_features, weights=None, normalize: str = "chw", reduction: str = "mean"):
        super().__init__()
        _validate.choice(normalize, "normalize", STYLE_NORMALIZE)
        _validate.choice(reduction, "reduction", REDUCTIONS)
        self.normalize, self.reduction = normalize, reduction
        if isinstance(target_features, Mapping):
            self.names = list(target_features.keys())
            feats = [target_features[k] for k in self.names]
        elif isinstance(target_features, Sequence) and not isinstance(target_features, torch.Tensor):
            self.names = None
            feats = list(target_features)
        else:
            raise TypeError("target_features must be a sequence or a mapping of feature tensors")
        if not feats:
            raise ValueError("target_features must hold at least one layer")
        self.weights = self._layer_weights(weights, len(feats))
        # "gatys" Grams are unnormalised; the loss applies the paper's factor.
        gram_norm = normalize if normalize in GRAM_NORMALIZE else "none"
        for i, f in enumerate(feats):
            self.register_buffer(f"target_{i}", gram_matrix(f.detach(), normalize=gram_norm))

    def _layer_weights(self, weights, count: int):
        if weights is None:
            return [1.0] * count
        if isinstance(weights, Mapping):
            if self.names is None or set(weights) != set(self.names):
                raise ValueError(f"weights keys {sorted(weights)} must match the layers {self.names}")
            weights = [weights[k] for k in self.names]
        weights = [float(w) for w in weights]
        if len(weights) != count:
            raise ValueError(f"got {len(weights)} weights for {count} layers")
        return weights

    def target_grams(self):
        return [getattr(self, f"target_{i}") for i in range(len(self.weights))]

    def forward(self, features) -> torch.Tensor:
        if self.names is not None:
            if not isinstance(features, Mapping):
                raise TypeError(f"features must be a mapping with keys {self.names}")
            missing = [k for k in self.names if k not in features]
            if missing:
                raise ValueError(f"features lacks layers {missing}")
            features = [features[k] for k in self.names]
        elif isinstance(features, torch.Tensor) or not isinstance(features, Sequence):
            raise TypeError("features must be a sequence of feature tensors, one per layer")
        if len(features) != len(self.weights):
            raise ValueError(f"got {len(features)} feature tensors for {len(self.weights)} layers")
        total = None
        for w, f, target in zip(self.weights, features, self.target_grams()):
            term = w * style_loss(f, target, normalize=self.normalize, reduction=self.reduction)
            total = term if total is None else total + term
        return total
