#pragma once
// Device-independent halves of the Gram ops: what is a plain batched GEMM (backward) or a few
// elementwise ops on the small (B, C, C) residual around a device's Gram kernel (style loss).
#include <ATen/core/Tensor.h>

#include <tuple>

namespace fastperc {

using GramFn = at::Tensor (*)(const at::Tensor& x, double scale);

// scale * (grad + grad^T) @ x in x's dtype (one batched GEMM on MKL / cuBLAS).
at::Tensor gram_backward_composite(const at::Tensor& grad, const at::Tensor& x, double scale);

// (loss_scale * ||gram(x) - target||^2, residual) with the device's Gram kernel.
std::tuple<at::Tensor, at::Tensor> style_loss_composite(GramFn gram, const at::Tensor& x, const at::Tensor& target,
                                                        double gram_scale, double loss_scale);

}  // namespace fastperc
