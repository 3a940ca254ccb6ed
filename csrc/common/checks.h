#pragma once
// Input checks at the op boundary (TORCH_CHECK before any kernel runs), shared by every device.
#include <ATen/core/Tensor.h>

#include <cmath>

namespace fastperc {

// float64 accumulates in float64; float32, float16 and bfloat16 accumulate in float32.
inline at::ScalarType accumulate_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_features(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.defined(), "fastperc: ", name, " is undefined");
  TORCH_CHECK(x.dim() == 3, "fastperc: ", name, " must be (B, C, N), got ", x.dim(), " dimensions: ", x.sizes());
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, "fastperc: ", name,
              " must be float16, bfloat16, float32 or float64, got ", t);
  TORCH_CHECK(x.size(0) > 0 && x.size(1) > 0 && x.size(2) > 0, "fastperc: ", name,
              " must have B, C and N > 0, got ", x.sizes());
}

inline void check_square_like(const at::Tensor& g, const at::Tensor& x, const char* name, bool allow_batch_one) {
  const int64_t B = x.size(0), C = x.size(1);
  TORCH_CHECK(g.defined(), "fastperc: ", name, " is undefined");
  TORCH_CHECK(g.device() == x.device(), "fastperc: ", name, " is on ", g.device(), " but the features are on ",
              x.device());
  TORCH_CHECK(g.scalar_type() == accumulate_type(x.scalar_type()), "fastperc: ", name, " must be ",
              accumulate_type(x.scalar_type()), " for ", x.scalar_type(), " features, got ", g.scalar_type());
  const bool batch_ok = g.dim() == 3 && (g.size(0) == B || (allow_batch_one && g.size(0) == 1));
  TORCH_CHECK(batch_ok && g.size(1) == C && g.size(2) == C, "fastperc: ", name, " must be (",
              allow_batch_one ? "1 or " : "", B, ", ", C, ", ", C, "), got ", g.sizes());
}

inline void check_finite_scale(double s, const char* name) {
  TORCH_CHECK(std::isfinite(s), "fastperc: ", name, " must be finite, got ", s);
}

}  // namespace fastperc
