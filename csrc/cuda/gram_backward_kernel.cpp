// gram_backward on CUDA: one batched GEMM (cuBLAS through ATen), see common/gram_composites.cpp.
#include <torch/library.h>

#include "common/gram_composites.h"

TORCH_LIBRARY_IMPL(fastperc, CUDA, m) { m.impl("gram_backward", &fastperc::gram_backward_composite); }
