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


# The fake kernels check what their outputs' shapes rest on, as the C++ kernels do (csrc/common/*_checks.h):
# meta or fake tensors of inconsistent shapes or mixed devices raise here instead of tracing a wrong
# graph. torch._check keeps the checks valid for symbolic sizes under torch.compile(dynamic=True).
def _check_devices(op: str, **tensors) -> None:
    present = {name: t for name, t in tensors.items() if t is not None}
    devices = {t.device for t in present.values()}
    if len(devices) > 1:
        where = ", ".join(f"{name} on {t.device}" for name, t in present.items())
        raise RuntimeError(f"fastperc::{op}: all tensors must be on one device, got {where}")


def _check_dims(op: str, name: str, t, dims) -> None:
    torch._check(t.dim() in dims, lambda: f"fastperc::{op}: {name} must have {' or '.join(map(str, dims))} "
                                          f"dimensions, got shape {tuple(t.shape)}")


def _check_features(op: str, x) -> None:
    _check_dims(op, "x", x, (3,))
    torch._check(x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64),
                 lambda: f"fastperc::{op}: x must be float16, bfloat16, float32 or float64, got {x.dtype}")


def _check_square(op: str, name: str, g, x, batch_one: bool) -> None:
    batch, channels, _ = x.shape
    _check_dims(op, name, g, (3,))
    torch._check((g.shape[0] == batch or (batch_one and g.shape[0] == 1)) and g.shape[1] == channels
                 and g.shape[2] == channels,
                 lambda: f"fastperc::{op}: {name} must be ({'1 or ' if batch_one else ''}{batch}, {channels}, "
                         f"{channels}), got {tuple(g.shape)}")
    torch._check(g.dtype == accumulate_dtype(x.dtype),
                 lambda: f"fastperc::{op}: {name} must be {accumulate_dtype(x.dtype)}, got {g.dtype}")


@register_fake("fastperc::gram")
def _gram_fake(x, scale):
    _check_features("gram", x)
    batch, channels, _ = x.shape
    return x.new_empty((batch, channels, channels), dtype=accumulate_dtype(x.dtype))


@register_fake("fastperc::gram_backward")
def _gram_backward_fake(grad, x, scale):
    _check_devices("gram_backward", grad=grad, x=x)
    _check_features("gram_backward", x)
    _check_square("gram_backward", "grad", grad, x, batch_one=False)
    return x.new_empty(x.shape)


@register_fake("fastperc::style_loss")
def _style_loss_fake(x, target, gram_scale, loss_scale):
    _check_devices("style_loss", x=x, target=target)
    _check_features("style_loss", x)
    _check_square("style_loss", "target", target, x, batch_one=True)
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


def _check_ssim(op: str, x, y, window, padding, **grads) -> None:
    _check_devices(op, x=x, y=y, window=window, **grads)
    _check_dims(op, "x", x, (4, 5))
    torch._check(y.shape == x.shape, lambda: f"fastperc::{op}: y must have the shape of x {tuple(x.shape)}, "
                                             f"got {tuple(y.shape)}")
    torch._check(y.dtype == x.dtype, lambda: f"fastperc::{op}: y must have the dtype of x ({x.dtype}), got {y.dtype}")
    torch._check(window.dim() == 1 and window.shape[0] % 2 == 1,
                 lambda: f"fastperc::{op}: window must be 1-D with an odd number of taps, got {tuple(window.shape)}")
    torch._check(padding in (0, 1, 2), lambda: f"fastperc::{op}: padding must be 0 (valid), 1 (zero) or 2 (reflect), "
                                               f"got {padding}")
    if padding == 0:
        torch._check(all(s >= window.shape[0] for s in x.shape[2:]),
                     lambda: f"fastperc::{op}: with padding='valid' the image {tuple(x.shape[2:])} must be at least "
                             f"the window size {window.shape[0]} in every spatial dimension")


@register_fake("fastperc::ssim")
def _ssim_fake(x, y, window, c1, c2, padding):
    _check_ssim("ssim", x, y, window, padding)
    acc = accumulate_dtype(x.dtype)
    return tuple(x.new_empty(x.shape[:2], dtype=acc) for _ in range(3))


@register_fake("fastperc::ssim_map")
def _ssim_map_fake(x, y, window, c1, c2, padding):
    _check_ssim("ssim_map", x, y, window, padding)
    return x.new_empty(ssim_map_shape(x, window.shape[0], padding), dtype=accumulate_dtype(x.dtype))


@register_fake("fastperc::ssim_backward")
def _ssim_backward_fake(grad_ssim, grad_cs, grad_l1, x, y, window, c1, c2, padding, output_mask=(True, True)):
    _check_ssim("ssim_backward", x, y, window, padding, grad_ssim=grad_ssim, grad_cs=grad_cs, grad_l1=grad_l1)
    map_shape = ssim_map_shape(x, window.shape[0], padding)
    for name, grad, shape in (("grad_ssim", grad_ssim, map_shape), ("grad_cs", grad_cs, map_shape),
                              ("grad_l1", grad_l1, tuple(x.shape))):
        if grad is not None:
            torch._check(tuple(grad.shape) == shape,
                         lambda: f"fastperc::ssim_backward: {name} must have shape {shape}, got {tuple(grad.shape)}")
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


KEY_LIMIT = 1 << 16  # csrc/common/sparse_math.h: kernel sizes, strides, paddings and dilations are at most this


def _check_coords(op: str, name: str, coords) -> None:
    torch._check(coords.dim() == 2 and coords.shape[1] == 4 and coords.dtype == torch.int32,
                 lambda: f"fastperc::{op}: {name} must be (N, 4) int32 (batch, x, y, z), got {tuple(coords.shape)} "
                         f"{coords.dtype}")


def _kernel_volume(op: str, kernel_size, stride, padding, dilation) -> int:
    for name, values, least in (("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0),
                                ("dilation", dilation, 1)):
        if len(values) != 3 or any(v < least or v > KEY_LIMIT for v in values):
            raise RuntimeError(f"fastperc::{op}: {name} must have 3 entries in [{least}, {KEY_LIMIT}], got {values}")
    return kernel_size[0] * kernel_size[1] * kernel_size[2]


def _check_sparse_conv(op: str, feats, weight, kmap, inv_map, **more) -> None:
    _check_devices(op, feats=feats, weight=weight, kmap=kmap, inv_map=inv_map, **more)
    _check_dims(op, "feats", feats, (2,))
    _check_dims(op, "weight", weight, (3,))
    _check_dims(op, "kmap", kmap, (2,))
    torch._check(weight.shape[1] == feats.shape[1], lambda: f"fastperc::{op}: weight has C_in = {weight.shape[1]} "
                                                            f"but feats have {feats.shape[1]} channels")
    torch._check(weight.dtype == feats.dtype, lambda: f"fastperc::{op}: feats ({feats.dtype}) and weight "
                                                      f"({weight.dtype}) must have the same dtype")
    torch._check(kmap.shape[0] == weight.shape[0] and kmap.dtype == torch.int32,
                 lambda: f"fastperc::{op}: kernel map must be (K = {weight.shape[0]}, N_out) int32, got "
                         f"{tuple(kmap.shape)} {kmap.dtype}")
    if inv_map is not None:
        torch._check(inv_map.dim() == 2 and inv_map.shape[0] == weight.shape[0] and inv_map.shape[1] == feats.shape[0],
                     lambda: f"fastperc::{op}: inv_map must be (K, N_in = {feats.shape[0]}), got "
                             f"{tuple(inv_map.shape)}")


@register_fake("fastperc::sparse_kernel_map")
def _sparse_kernel_map_fake(in_coords, out_coords, kernel_size, stride, padding, dilation, transposed):
    _check_devices("sparse_kernel_map", in_coords=in_coords, out_coords=out_coords)
    _check_coords("sparse_kernel_map", "in_coords", in_coords)
    _check_coords("sparse_kernel_map", "out_coords", out_coords)
    volume = _kernel_volume("sparse_kernel_map", kernel_size, stride, padding, dilation)
    return in_coords.new_empty((volume, out_coords.shape[0]), dtype=torch.int32)


@register_fake("fastperc::sparse_out_coords")
def _sparse_out_coords_fake(in_coords, kernel_size, stride, padding, dilation, spatial_shape, transposed):
    _check_coords("sparse_out_coords", "in_coords", in_coords)
    _kernel_volume("sparse_out_coords", kernel_size, stride, padding, dilation)
    # The number of output sites depends on the data.
    count = torch.library.get_ctx().new_dynamic_size()
    return in_coords.new_empty((count, 4))


@register_fake("fastperc::sparse_conv")
def _sparse_conv_fake(feats, weight, kmap, inv_map=None):
    _check_sparse_conv("sparse_conv", feats, weight, kmap, inv_map)
    return feats.new_empty((kmap.shape[1], weight.shape[2]))


@register_fake("fastperc::sparse_conv_backward")
def _sparse_conv_backward_fake(grad_out, feats, weight, kmap, inv_map=None, output_mask=(True, True)):
    _check_sparse_conv("sparse_conv_backward", feats, weight, kmap, inv_map, grad_out=grad_out)
    torch._check(grad_out.dim() == 2 and grad_out.shape[0] == kmap.shape[1] and grad_out.shape[1] == weight.shape[2],
                 lambda: f"fastperc::sparse_conv_backward: grad_out must be (N_out = {kmap.shape[1]}, C_out = "
                         f"{weight.shape[2]}), got {tuple(grad_out.shape)}")
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


from fastperc.functional.chamfer import KERNEL_MAX_DIM as KNN_MAX_DIM, KERNEL_MAX_K as KNN_MAX_K  # noqa: E402


def _check_clouds(op: str, x, y) -> None:
    _check_dims(op, "x", x, (3,))
    _check_dims(op, "y", y, (3,))
    torch._check(x.shape[0] == y.shape[0] and x.shape[2] == y.shape[2],
                 lambda: f"fastperc::{op}: x {tuple(x.shape)} and y {tuple(y.shape)} must have the same batch size and D")
    torch._check(x.dtype == y.dtype, lambda: f"fastperc::{op}: x ({x.dtype}) and y ({y.dtype}) must have one dtype")


@register_fake("fastperc::knn_points")
def _knn_points_fake(x, y, x_lengths, y_lengths, k):
    _check_devices("knn_points", x=x, y=y, x_lengths=x_lengths, y_lengths=y_lengths)
    _check_clouds("knn_points", x, y)
    torch._check(1 <= x.shape[2] <= KNN_MAX_DIM, lambda: f"fastperc::knn_points: D must lie in [1, {KNN_MAX_DIM}]")
    if not 1 <= k <= KNN_MAX_K:
        raise RuntimeError(f"fastperc::knn_points: k must lie in [1, {KNN_MAX_K}], got {k}")
    shape = (x.shape[0], x.shape[1], k)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.long)


@register_fake("fastperc::knn_points_backward")
def _knn_points_backward_fake(grad_dists, x, y, idx):
    _check_devices("knn_points_backward", grad_dists=grad_dists, x=x, y=y, idx=idx)
    _check_clouds("knn_points_backward", x, y)
    torch._check(idx.dim() == 3 and idx.shape[:2] == x.shape[:2] and idx.dtype == torch.long,
                 lambda: f"fastperc::knn_points_backward: idx must be ({x.shape[0]}, {x.shape[1]}, k) int64")
    torch._check(grad_dists.shape == idx.shape and grad_dists.dtype == x.dtype,
                 lambda: "fastperc::knn_points_backward: grad_dists must have idx's shape and x's dtype")
    return x.new_empty(x.shape), y.new_empty(y.shape)


def _knn_points_setup(ctx, inputs, output):
    x, y, _, _, _ = inputs
    ctx.save_for_backward(x, y, output[1])


def _knn_points_backward(ctx, grad_dists, grad_idx):
    # The indices are piecewise constant in the points: only the distances carry a gradient.
    x, y, idx = ctx.saved_tensors
    grad_x, grad_y = torch.ops.fastperc.knn_points_backward(grad_dists, x, y, idx)
    return grad_x, grad_y, None, None, None


register_autograd("fastperc::knn_points", _knn_points_backward, setup_context=_knn_points_setup)


def _knn_points_backward_setup(ctx, inputs, output):
    grad_dists, x, y, idx = inputs
    ctx.save_for_backward(grad_dists, x, y, idx)


def _gather_neighbours(points, idx):
    """points (B, M, D) at idx (B, N, k) (-1 reads row 0; callers mask it): (B, N, k, D)."""
    batch, n, k = idx.shape
    flat = idx.clamp_min(0).reshape(batch, n * k, 1).expand(-1, -1, points.shape[2])
    return torch.gather(points, 1, flat).reshape(batch, n, k, points.shape[2])


def _knn_points_backward_backward(ctx, up_x, up_y):
    # The backward is bilinear: (grad_x, grad_y) = sum over pairs 2 g (x_i - y_j) (+ at i, - at j). With
    # upstream (u_x, u_y): d/dg = 2 (x_i - y_j).(u_x_i - u_y_j), and d/d(x, y) is the same backward
    # applied to (u_x, u_y), so the op serves its own derivative (deterministic again).
    grad_dists, x, y, idx = ctx.saved_tensors
    valid = idx >= 0
    d_grad = d_x = d_y = None
    if ctx.needs_input_grad[0]:
        diff = x[:, :, None] - _gather_neighbours(y, idx)
        up_diff = up_x[:, :, None] - _gather_neighbours(up_y, idx)
        d_grad = torch.where(valid, 2 * (diff * up_diff).sum(-1), torch.zeros_like(grad_dists))
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        d_x, d_y = torch.ops.fastperc.knn_points_backward(grad_dists, up_x, up_y, idx)
    return d_grad, d_x, d_y, None


register_autograd("fastperc::knn_points_backward", _knn_points_backward_backward,
                  setup_context=_knn_points_backward_setup)
