// Every fastperc schema, in one place. Kernels register per device in cpu/ and cuda/; fake (meta)
// kernels and autograd formulas are registered from Python (fastperc/ops.py).
#include <torch/library.h>

TORCH_LIBRARY(fastperc, m) {
  // x: (B, C, N) float16/bfloat16/float32/float64, any strides. Returns scale * x @ x^T as (B, C, C)
  // in the accumulation dtype (float64 for float64 input, float32 otherwise).
  m.def("gram(Tensor x, float scale) -> Tensor");
  // scale * (grad + grad^T) @ x, returned in x's dtype: the gradient of gram() w.r.t. x.
  m.def("gram_backward(Tensor grad, Tensor x, float scale) -> Tensor");
  // loss = loss_scale * sum_b ||gram_scale * x_b x_b^T - target_b||_F^2 with target (1 or B, C, C) in the
  // accumulation dtype. Also returns the residual (B, C, C) the backward needs: no Gram autograd graph.
  m.def("style_loss(Tensor x, Tensor target, float gram_scale, float loss_scale) -> (Tensor, Tensor)");
}
