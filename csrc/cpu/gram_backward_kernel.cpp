// gram_backward on the CPU: one batched GEMM (MKL through ATen), see common/gram_composites.cpp.
#include <torch/library.h>

#include "common/gram_composites.h"

TORCH_LIBRARY_IMPL(fastperc, CPU, m) { m.impl("gram_backward", &fastperc::gram_backward_composite); }
