"""VoxNet (Maturana and Scherer, IROS 2015) on occupancy grids, dense and sparse, with one set of weights.

The network: the grid mapped to {-1, 1} (empty, occupied), conv 32 x 5^3 stride 2 -> leaky ReLU 0.1 ->
dropout 0.2 -> conv 32 x 3^3 -> leaky ReLU -> max-pool 2^3 -> dropout 0.3 -> fc 128 -> leaky ReLU ->
dropout 0.4 -> fc classes ("valid" convolutions, as in the paper's code). At 32^3 the features before
the first fc are 32 x 6^3.

`VoxNet.forward` runs it densely (conv3d). `VoxNet.forward_sparse` runs the two convolutions on the
occupied sites only (fastperc.sparse): an empty region of the grid has the same value everywhere (-1 at
the input), so every layer's output away from the sites is one constant per channel, carried beside the
sparse features. A convolution gives its sites sum_k W_k (x - background) over the sites in the window,
plus the constant sum_k W_k background + bias that every window sees; the dense grid is rebuilt (sites
over the constant) only before the max-pool. In eval mode the two give the same logits for the same
weights (tested to 1e-12 in float64); in training, dropout draws different masks (the sparse path drops
site features only). The sparse convolutions scale with the occupied sites, not the grid: 64^3 and
128^3 grids fit where dense conv3d's activations grow with the cube (the fc layers grow alike in
both).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastperc.sparse import functional as SF
from fastperc.sparse.tensor import SparseTensor

SLOPE = 0.1  # leaky ReLU


def feature_size(resolution: int) -> int:
    """Side of the max-pooled features for a resolution^3 grid."""
    side = (resolution - 5) // 2 + 1 - 2
    if side < 2:
        raise ValueError(f"VoxNet needs a grid of at least 10^3, got {resolution}^3")
    return side // 2


class VoxNet(torch.nn.Module):
    def __init__(self, num_classes: int, resolution: int = 32):
        super().__init__()
        self.resolution = resolution
        self.conv1 = torch.nn.Conv3d(1, 32, 5, stride=2)
        self.conv2 = torch.nn.Conv3d(32, 32, 3)
        self.fc1 = torch.nn.Linear(32 * feature_size(resolution) ** 3, 128)
        self.fc2 = torch.nn.Linear(128, num_classes)
        self.drop1, self.drop2, self.drop3 = torch.nn.Dropout(0.2), torch.nn.Dropout(0.3), torch.nn.Dropout(0.4)

    def _check_grid(self, shape):
        if tuple(shape[-3:]) != (self.resolution,) * 3:
            raise ValueError(f"this VoxNet takes {self.resolution}^3 grids, got {tuple(shape[-3:])}")

    def forward(self, occupancy: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) of occupancy grids (B, R, R, R) or (B, 1, R, R, R), bool or 0/1."""
        if occupancy.dim() == 4:
            occupancy = occupancy[:, None]
        if occupancy.dim() != 5 or occupancy.shape[1] != 1:
            raise ValueError(f"occupancy must be (B, R, R, R) or (B, 1, R, R, R), got {tuple(occupancy.shape)}")
        self._check_grid(occupancy.shape)
        x = occupancy.to(self.conv1.weight.dtype) * 2 - 1
        x = self.drop1(F.leaky_relu(self.conv1(x), SLOPE))
        x = F.leaky_relu(self.conv2(x), SLOPE)
        return self._head(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop2(F.max_pool3d(x, 2))
        x = self.drop3(F.leaky_relu(self.fc1(x.flatten(1)), SLOPE))
        return self.fc2(x)

    def forward_sparse(self, sites: SparseTensor, batch_size: int | None = None) -> torch.Tensor:
        """Logits (B, classes) of the grids whose occupied voxels are `sites` (feature ignored: every site
        is occupied; spatial_shape must be the grid's), with the convolutions run on the sites only."""
        if not isinstance(sites, SparseTensor):
            raise TypeError(f"sites must be a fastperc.sparse.SparseTensor, got {type(sites).__name__}")
        self._check_grid(sites.spatial_shape)
        batch = sites.batch_size if batch_size is None else batch_size
        w = self.conv1.weight
        x = sites.replace(torch.ones((len(sites.coords), 1), dtype=w.dtype, device=w.device))
        background = torch.full((1,), -1.0, dtype=w.dtype, device=w.device)
        x, background = _sparse_conv(x, background, self.conv1, stride=2)
        x, background = x.replace(self.drop1(F.leaky_relu(x.feats, SLOPE))), F.leaky_relu(background, SLOPE)
        x, background = _sparse_conv(x, background, self.conv2, stride=1)
        x, background = x.replace(F.leaky_relu(x.feats, SLOPE)), F.leaky_relu(background, SLOPE)
        dense = background.reshape(1, -1, 1, 1, 1).expand((batch, -1) + tuple(x.spatial_shape)).clone()
        c = x.coords.long()
        dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = x.feats
        return self._head(dense)


def _sparse_conv(x: SparseTensor, background: torch.Tensor, conv: torch.nn.Conv3d, stride: int):
    """A "valid" conv3d of a grid that is `background` (C_in,) away from x's sites: (output sites,
    output background)."""
    cout, cin = conv.weight.shape[:2]
    weight = conv.weight.permute(2, 3, 4, 1, 0).reshape(-1, cin, cout)  # (K, C_in, C_out), k = (kx Ky + ky) Kz + kz
    everywhere = background @ weight.sum(0) + conv.bias  # what a window of background alone gives
    out = SF.conv3d(x.replace(x.feats - background), weight, None, conv.kernel_size, stride, 0, 1, mode="regular")
    return out.replace(out.feats + everywhere), everywhere
