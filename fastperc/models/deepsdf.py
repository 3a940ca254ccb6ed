"""DeepSDF (Park et al., CVPR 2019): an auto-decoder from (latent code, xyz) to a signed distance.

The decoder: 8 fully connected layers of 512 with weight norm, ReLU and dropout 0.2; the input (code +
xyz) re-enters at layer 4 (layer 3 outputs 512 - input width so the concatenation is 512 wide); a last
linear layer and tanh. Training fits one code per shape jointly with the decoder under the clamped L1
loss (delta 0.1) plus a code regulariser; an unseen shape is reconstructed by fitting a code with the
decoder frozen. Widths are arguments, so the tests fit a small one on a CPU in seconds.

Functions: `clamped_l1`, `fit` (decoder and codes over a set of shapes' samples), `reconstruct`
(a code for new samples), `mesh` (marching cubes of the decoded field), `chamfer_eval` (DeepSDF's
metric with fastperc's exact Chamfer kernel: 30000 surface samples a side, mean squared nearest
distance one way plus the other), `interpolate` (codes between two shapes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import fastperc
from fastperc.geometry import sdf as _sdf
from fastperc.geometry.mesh import Mesh

DELTA = 0.1  # the clamp of the L1 loss, as in the paper


class DeepSDF(torch.nn.Module):
    def __init__(self, latent: int = 256, hidden: int = 512, layers: int = 8, skip: int = 4, dropout: float = 0.2):
        super().__init__()
        if not 0 < skip < layers:
            raise ValueError(f"skip must lie in (0, {layers}), got {skip}")
        width_in = latent + 3
        if hidden <= width_in:
            raise ValueError(f"hidden ({hidden}) must exceed latent + 3 ({width_in}) for the skip connection")
        self.latent, self.skip = latent, skip
        self.layers = torch.nn.ModuleList()
        for i in range(layers):
            fan_in = width_in if i == 0 else hidden
            fan_out = hidden - width_in if i == skip - 1 else hidden
            self.layers.append(torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(fan_in, fan_out)))
        self.out = torch.nn.Linear(hidden, 1)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, codes: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        """SDF (N,) at xyz (N, 3) of the shapes whose codes (N, latent) or (latent,) are given."""
        if xyz.dim() != 2 or xyz.shape[1] != 3:
            raise ValueError(f"xyz must be (N, 3), got {tuple(xyz.shape)}")
        codes = codes.expand(len(xyz), -1) if codes.dim() == 1 else codes
        if codes.shape != (len(xyz), self.latent):
            raise ValueError(f"codes must be ({len(xyz)}, {self.latent}) or ({self.latent},), got {tuple(codes.shape)}")
        inputs = torch.cat([codes, xyz], 1)
        h = inputs
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, inputs], 1)
            h = self.dropout(F.relu(layer(h)))
        return torch.tanh(self.out(h))[:, 0]


def clamped_l1(pred: torch.Tensor, sdf: torch.Tensor, delta: float = DELTA) -> torch.Tensor:
    """mean |clamp(pred, -delta, delta) - clamp(sdf, -delta, delta)|."""
    return (pred.clamp(-delta, delta) - sdf.clamp(-delta, delta)).abs().mean()


def training_batch(samples, batch: int, generator: torch.Generator | None = None):
    """`batch` samples drawn from every shape's (points (n, 3), sdf (n,)): (xyz, sdf, shape index)."""
    xyz, target, shape = [], [], []
    for s, (points, values) in enumerate(samples):
        pick = torch.randint(0, len(points), (min(batch, len(points)),), generator=generator)
        xyz.append(points[pick])
        target.append(values[pick])
        shape.append(torch.full((len(pick),), s, dtype=torch.long))
    return torch.cat(xyz), torch.cat(target), torch.cat(shape)


def auto_decoder_loss(decoder: DeepSDF, codes: torch.nn.Embedding, xyz, target, shape, step: int,
                      code_reg: float = 1e-4) -> torch.Tensor:
    """The clamped L1 of the shapes' codes at xyz, plus the code regulariser ramped in over 100 steps."""
    z = codes(shape.to(codes.weight.device))
    loss = clamped_l1(decoder(z, xyz.to(z)), target.to(z))
    return loss + code_reg * min(1.0, step / 100) * z.norm(dim=1).mean()


def fit(decoder: DeepSDF, samples, steps: int, batch: int = 16384, lr: float = 5e-4, code_lr: float = 1e-3,
        code_reg: float = 1e-4, generator: torch.Generator | None = None, progress=None):
    """Trains decoder and one code per shape (the auto-decoder) on samples, a list of (points (n, 3), sdf
    (n,)) per shape: each step draws `batch` samples from every shape. Returns the codes (shapes, latent)
    and the loss of each step."""
    device = next(decoder.parameters()).device
    codes = torch.nn.Embedding(len(samples), decoder.latent, max_norm=1.0).to(device)
    torch.nn.init.normal_(codes.weight, 0.0, 1.0 / decoder.latent ** 0.5)
    opt = torch.optim.Adam([{"params": decoder.parameters(), "lr": lr}, {"params": codes.parameters(), "lr": code_lr}])
    decoder.train()
    losses = []
    for step in range(steps):
        loss = auto_decoder_loss(decoder, codes, *training_batch(samples, batch, generator), step, code_reg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress:
            progress.update(step + 1, loss.item())
    decoder.eval()
    return codes.weight.detach(), losses


def reconstruct(decoder: DeepSDF, points: torch.Tensor, values: torch.Tensor, steps: int = 800, lr: float = 5e-3,
                samples: int = 8000, code_reg: float = 1e-4, generator: torch.Generator | None = None):
    """A code for an unseen shape from its SDF samples, with the decoder frozen (paper: 800 Adam steps at
    5e-3 on 8000 samples, code from N(0, 0.01^2), plus 1e-4 * mean(z^2))."""
    param = next(decoder.parameters())
    decoder.eval()
    code = (torch.randn(decoder.latent, generator=generator) * 0.01).to(param).requires_grad_(True)
    opt = torch.optim.Adam([code], lr=lr)
    for _ in range(steps):
        pick = torch.randint(0, len(points), (min(samples, len(points)),), generator=generator)
        pred = decoder(code, points[pick].to(param))
        loss = clamped_l1(pred, values[pick].to(param)) + code_reg * code.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return code.detach()


def mesh(decoder: DeepSDF, code: torch.Tensor, resolution: int = 64) -> Mesh:
    """The decoded shape's zero level set by marching cubes over [-1, 1]^3."""
    param = next(decoder.parameters())
    values = _sdf.sdf_grid(lambda p: decoder(code, p), resolution, dtype=param.dtype, device=param.device)
    return _sdf.marching_cubes(values.cpu())


def chamfer_eval(a: Mesh, b: Mesh, count: int = 30000, seed: int = 0) -> float:
    """DeepSDF's evaluation: count surface samples on each mesh, mean squared nearest distance one way
    plus the other (fastperc.chamfer_distance)."""
    pa, _ = a.sample_surface(count, torch.Generator().manual_seed(seed))
    pb, _ = b.sample_surface(count, torch.Generator().manual_seed(seed + 1))
    return fastperc.chamfer_distance(pa[None].double(), pb[None].double().to(pa.device)).item()


def interpolate(code_a: torch.Tensor, code_b: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """(steps, latent) codes from a to b, ends included."""
    t = torch.linspace(0, 1, steps, dtype=code_a.dtype, device=code_a.device)[:, None]
    return (1 - t) * code_a + t * code_b
