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


def ssim_map_shape(x, window_size: int, padding: int):
    """Shape of the SSIM map: the input's for "same" padding, shrunk by the window for "valid"."""
    shrink = window_size - 1 if padding == 0 else 0
    return tuple(x.shape[:2]) + tuple(s - shrink for s in x.shape[2:])


@register_fake("fastperc::ssim")
def _ssim_fake(x, y, window, c1, c2, padding):
    acc = accumulate_dtype(x.dtype)
    return tuple(x.new_empty(x.shape[:2], dtype=acc) for _ in range(3))


@register_fake("fastperc::ssim_map")
def _ssim_map_fake(x, y, window, c1, c2, padding):
    return x.new_empty(ssim_map_shape(x, window.shape[0], padding), dtype=accumulate_dtype(x.dtype))


@register_fake("fastperc::ssim_backward")
def _ssim_backward_fake(grad_ssim, grad_cs, grad_l1, x, y, window, c1, c2, padding, output_mask=(True, True)):
    return (x.new_empty(x.shape if output_mask[0] else (0,)), y.new_empty(y.shape if output_mask[1] else (0,)))


def _ssim_setup(ctx, inputs, output):
    x, y, window, c1, c2, padding = inputs
    ctx.save_for_backward(x, y, window)
    ctx.c1, ctx.c2, ctx.padding = c1, c2, padding
    # Outputs the loss does not use (CS in plain SSIM, |x - y| outside the L1 + SSIM loss) get None
    # instead of zero tensors, so the kernel skips their terms instead of multiplying zeros per pixel.
    ctx.set_materialize_grads(False)


def _per_pixel(grad_bc, shape):
    """(B, C) gradient of a mean over the trailing dims of `shape`, as an expanded per-pixel tensor."""
    if grad_bc is None:
        return None
    count = 1
    for s in shape[2:]:
        count *= s
    return (grad_bc / count).reshape(tuple(grad_bc.shape) + (1,) * (len(shape) - 2)).expand(shape)


def _ssim_backward(ctx, grad_ssim, grad_cs, grad_l1):
    x, y, window = ctx.saved_tensors
    map_shape = ssim_map_shape(x, window.shape[0], ctx.padding)
    if grad_ssim is None:
        grad_ssim = x.new_zeros((), dtype=accumulate_dtype(x.dtype)).expand(x.shape[:2])
    need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
    gx, gy = torch.ops.fastperc.ssim_backward(
        _per_pixel(grad_ssim, map_shape), _per_pixel(grad_cs, map_shape), _per_pixel(grad_l1, tuple(x.shape)),
        x, y, window, ctx.c1, ctx.c2, ctx.padding, need,
    )
    return (gx if need[0] else None, gy if need[1] else None, None, None, None, None)


register_autograd("fastperc::ssim", _ssim_backward, setup_context=_ssim_setup)


def _ssim_map_backward(ctx, grad_map):
    if grad_map is None:  # not materialised (see _ssim_setup)
        return None, None, None, None, None, None
    x, y, window = ctx.saved_tensors
    need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
    gx, gy = torch.ops.fastperc.ssim_backward(grad_map, None, None, x, y, window, ctx.c1, ctx.c2, ctx.padding, need)
    return (gx if need[0] else None, gy if need[1] else None, None, None, None, None)


register_autograd("fastperc::ssim_map", _ssim_map_backward, setup_context=_ssim_setup)


@register_fake("fastperc::sparse_kernel_map")
def _sparse_kernel_map_fake(in_coords, out_coords, kernel_size, stride, padding, dilation, transposed):
    volume = kernel_size[0] * kernel_size[1] * kernel_size[2]
    return in_coords.new_empty((volume, out_coords.shape[0]), dtype=torch.int32)


@register_fake("fastperc::sparse_out_coords")
def _sparse_out_coords_fake(in_coords, kernel_size, stride, padding, dilation, spatial_shape, transposed):
    # The number of output sites depends on the data.
    count = torch.library.get_ctx().new_dynamic_size()
    return in_coords.new_empty((count, 4))


@register_fake("fastperc::sparse_conv")
def _sparse_conv_fake(feats, weight, kmap, inv_map=None):
    return feats.new_empty((kmap.shape[1], weight.shape[2]))


@register_fake("fastperc::sparse_conv_backward")
def _sparse_conv_backward_fake(grad_out, feats, weight, kmap, inv_map=None, output_mask=(True, True)):
    return (feats.new_empty(feats.shape if output_mask[0] else (0,)),
            weight.new_empty(weight.shape if output_mask[1] else (0,)))


def _sparse_conv_setup(ctx, inputs, output):
    feats, weight, kmap, inv_map = inputs
    ctx.save_for_backward(feats, weight, kmap, inv_map)


def _sparse_conv_backward(ctx, grad_out):
    feats, weight, kmap, inv_map = ctx.saved_tensors
    # Only the gradients autograd asks for are computed: the first layer's features or frozen
    # weights usually need none, and each is about half of the backward's work.
    mask = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1])]
    grad_feats, grad_weight = torch.ops.fastperc.sparse_conv_backward(grad_out.contiguous(), feats, weight, kmap,
                                                                      inv_map, mask)
    return grad_feats if mask[0] else None, grad_weight if mask[1] else None, None, None


register_autograd("fastperc::sparse_conv", _sparse_conv_backward, setup_context=_sparse_conv_setup)
