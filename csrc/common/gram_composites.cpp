// The Gram ops that are a batched GEMM or a few elementwise ops around a device's Gram kernel: the CUDA
// Gram backward (one cuBLAS batched GEMM) and the style loss on every device.
#include "common/gram_composites.h"

#include <ATen/ops/bmm.h>

#include "common/checks.h"
#include "kernels.h"

namespace fastperc {

at::Tensor gram_backward_composite(const at::Tensor& grad, const at::Tensor& x, double scale) {
  check_features(x, "x");
  check_square_like(grad, x, "grad", /*allow_batch_one=*/false);
  check_finite_scale(scale, "scale");
  const auto acc = accumulate_type(x.scalar_type());
  // d(x x^T)/dx contracts grad with x from both sides: (grad + grad^T) x. One GEMM, no transposed copy
  // of x; half inputs go through float32 so the product cannot overflow.
  const at::Tensor sym = grad.add(grad.transpose(1, 2)).mul_(scale);
  return at::bmm(sym, x.to(acc)).to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> style_loss_composite(GramFn gram, const at::Tensor& x, const at::Tensor& target,
                                                        double gram_scale, double loss_scale) {
  check_features(x, "x");
  check_square_like(target, x, "target", /*allow_batch_one=*/true);
  check_finite_scale(gram_scale, "gram_scale");
  check_finite_scale(loss_scale, "loss_scale");
  at::Tensor residual = gram(x, gram_scale).sub_(target);
  // Rows, then matrices, then the batch: each reduction is over one contiguous dimension, so its order
  // of additions does not depend on the number of threads (a flat sum() would split it by thread).
  at::Tensor loss = residual.square().sum(-1).sum(-1).sum().mul_(loss_scale);
  return {loss, residual};
}

std::tuple<at::Tensor, at::Tensor> cpu::style_loss_cpu(const at::Tensor& x, const at::Tensor& target,
                                                       double gram_scale, double loss_scale) {
  return style_loss_composite(&cpu::gram_cpu, x, target, gram_scale, loss_scale);
}

#ifdef FASTPERC_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> cuda::style_loss_cuda(const at::Tensor& x, const at::Tensor& target,
                                                         double gram_scale, double loss_scale) {
  return style_loss_composite(&cuda::gram_cuda, x, target, gram_scale, loss_scale);
}

at::Tensor cuda::gram_backward_cuda(const at::Tensor& grad, const at::Tensor& x, double scale) {
  return gram_backward_composite(grad, x, scale);
}
#endif

}  // namespace fastperc
