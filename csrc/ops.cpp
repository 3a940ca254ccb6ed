// Registers every fastperc schema (the strings and what they mean: op_schemas.h). Kernels register per
// device in cpu/ and cuda/; fake (meta) kernels and autograd formulas are registered from Python
// (fastperc/ops.py).
#include <torch/library.h>

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
}
