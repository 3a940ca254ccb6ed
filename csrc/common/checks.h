#pragma once
// Input checks at the op boundary (TORCH_CHECK before any kernel runs), shared by every device.
#include <ATen/core/Tensor.h>

#include <cmath>
#include <initializer_list>

namespace fastperc {

// float64 accumulates in float64; float32, float16 and bfloat16 accumulate in float32.
inline at::ScalarType accumulate_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// The product of sizes (element counts of a buffer, a kernel volume), or a clear error when it passes
// 2^63 - 1: a wrapped product allocates a buffer of the wrong size (or none) that a kernel then writes
// past. Every op sizes its buffers through this one helper.
inline int64_t checked_size_product(std::initializer_list<int64_t> sizes, const char* what) {
  int64_t product = 1;
  for (int64_t s : sizes) {
    TORCH_CHECK(s >= 0, "fastperc: ", what, " has a negative size ", s);
    TORCH_CHECK(!__builtin_mul_overflow(product, s, &product), "fastperc: ", what, " has more than 2^63 - 1 elements (",
                c10::IntArrayRef(sizes.begin(), sizes.size()), ")");
  }
  return product;
}

inline void check_features(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.defined(), "fastperc: ", name, " is undefined");
  TORCH_CHECK(x.dim() == 3, "fastperc: ", name, " must be (B, C, N), got ", x.dim(), " dimensions: ", x.sizes());
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, "fastperc: ", name,
              " must be float16, bfloat16, float32 or float64, got ", t);
  TORCH_CHECK(x.size(0) > 0 && x.size(1) > 0 && x.size(2) > 0, "fastperc: ", name,
              " must have B, C and N > 0, got ", x.sizes());
  checked_size_product({x.size(0), x.size(1), x.size(1)}, "the Gram matrices (B, C, C)");
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
