#pragma once
#include <ATen/core/Tensor.h>

namespace fastperc {
namespace cpu {
// scale * x @ x^T for x (B, C, N) on the CPU, in the accumulation dtype.
at::Tensor gram_cpu(const at::Tensor& x, double scale);
}  // namespace cpu
}  // namespace fastperc
