"""Fake (meta) kernels and autograd formulas of the compiled ops.

Every backward is itself an op (gram_backward), so torch.compile traces forward and backward alike.
Imported by fastperc/__init__.py only when fastperc._C loaded.
"""
from __future__ import annotations

import torch
from torch.library import register_autograd, register_fake


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 accumulates in float64; float32, float16 and bfloat16 in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@register_fake("fastperc::gram")
def _gram_fake(x, scale):
    batch, channels, _ = x.shape
    return x.new_empty((batch, channels, channels), dtype=accumulate_dtype(x.dtype))


@register_fake("fastperc::gram_backward")
def _gram_backward_fake(grad, x, scale):
    return x.new_empty(x.shape)


@register_fake("fastperc::style_loss")
def _style_loss_fake(x, target, gram_scale, loss_scale):
    batch, channels, _ = x.shape
    acc = accumulate_dtype(x.dtype)
    return x.new_empty((), dtype=acc), x.new_empty((batch, channels, channels), dtype=acc)


def _gram_setup(ctx, inputs, output):
    x, scale = inputs
    ctx.save_for_backward(x)
    ctx.scale = scale


def _gram_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.ops.fastperc.gram_backward(grad, x, ctx.scale), None


register_autograd("fastperc::gram", _gram_backward, setup_context=_gram_setup)


def _gram_backward_setup(ctx, inputs, output):
    grad, x, scale = inputs
    ctx.save_for_backward(grad, x)
    ctx.scale = scale


def _gram_backward_backward(ctx, upstream):
    # out = s (g + g^T) x is linear in each input: d/dx = s (g + g^T) u, d/dg = s (u x^T + x u^T).
    grad, x = ctx.saved_tensors
    grad_grad = grad_x = None
    if ctx.needs_input_grad[0]:
        acc = accumulate_dtype(x.dtype)
        ux = torch.bmm(upstream.to(acc), x.to(acc).transpose(1, 2))
        grad_grad = (ux + ux.transpose(1, 2)) * ctx.scale
    if ctx.needs_input_grad[1]:
        grad_x = torch.ops.fastperc.gram_backward(grad, upstream, ctx.scale)
    return grad_grad, grad_x, None


register_autograd("fastperc::gram_backward", _gram_backward_backward, setup_context=_gram_backward_setup)


def _style_loss_setup(ctx, inputs, output):
    x, target, gram_scale, loss_scale = inputs
    _, residual = output
    ctx.save_for_backward(x, residual)
    ctx.gram_scale, ctx.loss_scale = gram_scale, loss_scale
    ctx.target_batch = target.shape[0]


def _style_loss_backward(ctx, grad_loss, grad_residual):
    # dL/dG = 2 ls (G - A): one GEMM with the features gives dL/dx; no (B, C, C) autograd graph.
    # The residual is a real output (R = gs x x^T - A), so a gradient reaching it adds to dL/dG; that
    # also keeps double backward exact, since the saved residual carries its own graph.
    x, residual = ctx.saved_tensors
    d_gram = residual * (2.0 * ctx.loss_scale * grad_loss)
    if grad_residual is not None:
        d_gram = d_gram + grad_residual
    grad_x = grad_target = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.ops.fastperc.gram_backward(d_gram, x, ctx.gram_scale)
    if ctx.needs_input_grad[1]:
        grad_target = -d_gram
        if ctx.target_batch == 1 and d_gram.shape[0] != 1:
            grad_target = grad_target.sum(0, keepdim=True)
    return grad_x, grad_target, None, None


register_autograd("fastperc::style_loss", _style_loss_backward, setup_context=_style_loss_setup)
