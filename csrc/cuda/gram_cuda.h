#pragma once
#include <ATen/core/Tensor.h>

namespace fastperc {
namespace cuda {
// scale * x @ x^T for x (B, C, N) on a CUDA device, in the accumulation dtype.
at::Tensor gram_cuda(const at::Tensor& x, double scale);
}  // namespace cuda
}  // namespace fastperc
