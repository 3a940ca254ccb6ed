// style_loss on the CPU: the CPU Gram kernel plus the residual and its squared norm.
#include <torch/library.h>

#include "common/gram_composites.h"
#include "cpu/gram_cpu.h"

namespace {
std::tuple<at::Tensor, at::Tensor> style_loss_cpu(const at::Tensor& x, const at::Tensor& target, double gram_scale,
                                                  double loss_scale) {
  return fastperc::style_loss_composite(&fastperc::cpu::gram_cpu, x, target, gram_scale, loss_scale);
}
}  // namespace

TORCH_LIBRARY_IMPL(fastperc, CPU, m) { m.impl("style_loss", &style_loss_cpu); }
