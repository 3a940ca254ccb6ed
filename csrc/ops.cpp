// The one registration unit: every fastperc schema (the strings and what they mean: op_schemas.h) and
// every device kernel (declared in kernels.h). Keeping torch/library.h out of the kernel units saves
// ~9 s of header parsing per unit. Fake (meta) kernels and autograd formulas are registered from
// Python (fastperc/ops.py).
#include <torch/library.h>

#include "kernels.h"
#include "op_schemas.h"

TORCH_LIBRARY(fastperc, m) {
  using namespace fastperc::schema;
  m.def(kGramSchema);
  m.def(kGramBackwardSchema);
  m.def(kStyleLossSchema);
  m.def(kSsimSchema);
  m.def(kSsimMapSchema);
  m.def(kSsimBackwardSchema);
  m.def(kSparseKernelMapSchema);
  m.def(kSparseOutCoordsSchema);
  m.def(kSparseConvSchema);
  m.def(kSparseConvBackwardSchema);
  m.def(kKnnPointsSchema);
  m.def(kKnnPointsBackwardSchema);
}

#define FASTPERC_REGISTER_KERNELS(ns)                              \
  m.impl("gram", &fastperc::ns::gram_##ns);                        \
  m.impl("gram_backward", &fastperc::ns::gram_backward_##ns);      \
  m.impl("style_loss", &fastperc::ns::style_loss_##ns);            \
  m.impl("ssim", &fastperc::ns::ssim_##ns);                        \
  m.impl("ssim_map", &fastperc::ns::ssim_map_##ns);                \
  m.impl("ssim_backward", &fastperc::ns::ssim_backward_##ns);      \
  m.impl("sparse_kernel_map", &fastperc::ns::sparse_kernel_map_##ns); \
  m.impl("sparse_out_coords", &fastperc::ns::sparse_out_coords_##ns); \
  m.impl("sparse_conv", &fastperc::ns::sparse_conv_##ns);          \
  m.impl("sparse_conv_backward", &fastperc::ns::sparse_conv_backward_##ns); \
  m.impl("knn_points", &fastperc::ns::knn_points_##ns);            \
  m.impl("knn_points_backward", &fastperc::ns::knn_points_backward_##ns);

TORCH_LIBRARY_IMPL(fastperc, CPU, m) { FASTPERC_REGISTER_KERNELS(cpu) }

#ifdef FASTPERC_WITH_CUDA
TORCH_LIBRARY_IMPL(fastperc, CUDA, m) { FASTPERC_REGISTER_KERNELS(cuda) }
#endif
