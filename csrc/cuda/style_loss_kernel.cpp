// style_loss on CUDA: the CUDA Gram kernel plus the residual and its squared norm.
#include <torch/library.h>

#include "common/gram_composites.h"
#include "cuda/gram_cuda.h"

namespace {
std::tuple<at::Tensor, at::Tensor> style_loss_cuda(const at::Tensor& x, const at::Tensor& target, double gram_scale,
                                                   double loss_scale) {
  return fastperc::style_loss_composite(&fastperc::cuda::gram_cuda, x, target, gram_scale, loss_scale);
}
}  // namespace

TORCH_LIBRARY_IMPL(fastperc, CUDA, m) { m.impl("style_loss", &style_loss_cuda); }
