"""SparseSyncBatchNorm: batch statistics over the active sites of every rank of a torch.distributed job.

Ranks hold different numbers of sites (a LiDAR sweep split across GPUs, ragged batches), so the ranks'
means cannot simply be averaged: the statistics are reduced as sums and counts. Forward: one
all-reduce of (sum, count) per channel, then one of the centred sums of squares (two passes: no
cancellation in E[x^2] - E[x]^2). Backward: one all-reduce of (sum g, sum g * xhat). The weight and
bias gradients stay local partial sums, which DDP's gradient averaging combines, as torch's
SyncBatchNorm does. Accumulation is in float32 at least (float64 for float64 features).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from fastperc.sparse.nn import SparseBatchNorm
from fastperc.sparse.tensor import SparseTensor


def _all_reduce(t: torch.Tensor, group) -> torch.Tensor:
    dist.all_reduce(t, group=group)
    return t


class _SyncBatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps, group):
        acc = torch.promote_types(x.dtype, torch.float32)
        xa = x.to(acc)
        sums = _all_reduce(torch.cat([xa.sum(0), xa.new_tensor([x.shape[0]])]), group)
        total = sums[-1]
        if total.item() < 2:  # the same total on every rank, so every rank raises
            raise ValueError(f"SparseSyncBatchNorm needs more than 1 site over all ranks in training, got {int(total)}")
        mean = sums[:-1] / total
        centred = xa - mean
        var = _all_reduce((centred * centred).sum(0), group) / total
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd
        y = xhat if weight is None else xhat * weight.to(acc)
        y = y if bias is None else y + bias.to(acc)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.group, ctx.total, ctx.has_bias = group, total, bias is not None
        ctx.mark_non_differentiable(mean, var, total)
        return y.to(x.dtype), mean, var, total

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var, _grad_total):
        xhat, invstd, weight = ctx.saved_tensors
        g = grad_y.to(xhat.dtype)
        sum_g, sum_gx = g.sum(0), (g * xhat).sum(0)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # Every rank's loss depends on these sites through the shared mean and variance.
            both = _all_reduce(torch.cat([sum_g, sum_gx]), ctx.group) / ctx.total
            mean_g, mean_gx = both.chunk(2)
            scale = invstd if weight is None else invstd * weight.to(xhat.dtype)
            grad_x = ((g - mean_g - xhat * mean_gx) * scale).to(grad_y.dtype)
        if weight is not None and ctx.needs_input_grad[1]:
            grad_w = sum_gx.to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = sum_g.to(weight.dtype)
        return grad_x, grad_w, grad_b, None, None


class SparseSyncBatchNorm(SparseBatchNorm):
    """SparseBatchNorm whose training statistics run over the sites of every rank in process_group
    (default: the whole job). Outside training, or without an initialised process group of more than
    one rank, it is SparseBatchNorm. Every rank must call it the same number of times, as with any
    collective; a rank with no sites still takes part."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None, **kwargs):
        # kwargs: what BatchNorm1d takes beyond these in this torch (bias=False in recent ones)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, **kwargs)
        self.process_group = process_group

    def _synchronised(self) -> bool:
        use_batch_stats = self.training or self.running_mean is None
        return (use_batch_stats and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if not self._synchronised():
            return super().forward(x)
        if x.feats.dim() != 2 or x.feats.shape[1] != self.num_features:
            raise ValueError(f"SparseSyncBatchNorm({self.num_features}) got features of shape {tuple(x.feats.shape)}")
        y, mean, var, total = _SyncBatchNormFunction.apply(x.feats, self.weight, self.bias, self.eps,
                                                           self.process_group)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean, var, total)
        return x.replace(y)

    @torch.no_grad()
    def _update_running_stats(self, mean, var, total):
        # As BatchNorm1d: running variance unbiased, momentum None = cumulative average.
        self.num_batches_tracked += 1
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (total / (total - 1))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def convert_sync_batchnorm(module: torch.nn.Module, process_group=None) -> torch.nn.Module:
    """module with every SparseBatchNorm replaced by a SparseSyncBatchNorm holding the same parameters
    and running statistics (in place for children; returns the new module when module itself is one).
    torch.nn.SyncBatchNorm.convert_sync_batchnorm does the same for dense BatchNorm layers."""
    if isinstance(module, SparseBatchNorm) and not isinstance(module, SparseSyncBatchNorm):
        like = module.weight if module.affine else module.running_mean  # keep the device and dtype
        out = SparseSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                  module.track_running_stats, process_group,
                                  device=None if like is None else like.device, dtype=None if like is None else like.dtype,
                                  **({"bias": False} if module.affine and module.bias is None else {}))
        out.load_state_dict(module.state_dict())
        out.train(module.training)
        if module.affine:
            out.weight.requires_grad_(module.weight.requires_grad)
            if module.bias is not None:
                out.bias.requires_grad_(module.bias.requires_grad)
        return out
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module
