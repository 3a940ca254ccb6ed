#pragma once
// Input checks of the nearest-neighbour ops, shared by every device (TORCH_CHECK before any kernel).
#include <ATen/core/Tensor.h>
#include <ATen/ops/all.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_or.h>
#include <ATen/ops/lt.h>

#include <vector>

#include "common/checks.h"
#include "common/knn_math.h"

namespace fastperc {

// Sizes of one knn problem, with the ragged lengths read to the host (B of them).
struct KnnProblem {
  int64_t B, N, M, D, K;
  std::vector<int64_t> x_lengths, y_lengths;
};

inline std::vector<int64_t> checked_lengths(const at::Tensor& lengths, const at::Tensor& cloud, const char* name) {
  const int64_t B = cloud.size(0), size = cloud.size(1);
  TORCH_CHECK(lengths.defined() && lengths.dim() == 1 && lengths.size(0) == B, "fastperc: ", name, " must be (", B,
              ",), got ", lengths.defined() ? lengths.sizes() : at::IntArrayRef{});
  TORCH_CHECK(lengths.scalar_type() == at::kLong, "fastperc: ", name, " must be int64, got ", lengths.scalar_type());
  TORCH_CHECK(lengths.device() == cloud.device(), "fastperc: ", name, " is on ", lengths.device(), " but the points are on ",
              cloud.device());
  const at::Tensor host = lengths.cpu();  // B values: one small copy (a sync on CUDA) buys a clear error
  std::vector<int64_t> out(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    out[b] = host[b].item<int64_t>();
    TORCH_CHECK(out[b] >= 0 && out[b] <= size, "fastperc: ", name, "[", b, "] = ", out[b], " lies outside [0, ", size,
                "] (the padded size)");
  }
  return out;
}

// NaN or infinite coordinates among the points a length covers would rank nothing (every comparison
// false) and break the grid search's cell math: an error instead. Padding beyond the lengths may hold
// anything.
inline void check_finite_points(const at::Tensor& cloud, const at::Tensor& lengths, const char* name) {
  if (cloud.numel() == 0) return;
  const at::Tensor beyond = at::arange(cloud.size(1), lengths.options()).unsqueeze(0).ge(lengths.unsqueeze(1));
  const at::Tensor ok = at::logical_or(at::isfinite(cloud).all(-1), beyond);
  TORCH_CHECK(ok.all().item<bool>(), "fastperc: ", name, " holds NaN or infinite coordinates within its lengths");
}

inline KnnProblem check_knn_inputs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                   const at::Tensor& y_lengths, int64_t k) {
  TORCH_CHECK(x.defined() && y.defined(), "fastperc: knn_points got an undefined tensor");
  TORCH_CHECK(x.dim() == 3 && y.dim() == 3, "fastperc: x and y must be (B, N, D) and (B, M, D), got ", x.sizes(),
              " and ", y.sizes());
  TORCH_CHECK(x.size(0) == y.size(0) && x.size(2) == y.size(2), "fastperc: x ", x.sizes(), " and y ", y.sizes(),
              " must have the same batch size and D");
  TORCH_CHECK(x.size(2) >= 1 && x.size(2) <= kKnnMaxDim, "fastperc: knn_points takes D in [1, ", kKnnMaxDim,
              "], got ", x.size(2));
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
              "fastperc: x must be float16, bfloat16, float32 or float64, got ", t);
  TORCH_CHECK(y.scalar_type() == t, "fastperc: y must have the dtype of x (", t, "), got ", y.scalar_type());
  TORCH_CHECK(y.device() == x.device(), "fastperc: y is on ", y.device(), " but x is on ", x.device());
  TORCH_CHECK(k >= 1 && k <= kKnnMaxK, "fastperc: knn_points takes k in [1, ", kKnnMaxK, "], got ", k);
  KnnProblem p{x.size(0), x.size(1), y.size(1), x.size(2), k, {}, {}};
  checked_size_product({p.B, p.N, p.K}, "the neighbour lists (B, N, k)");
  p.x_lengths = checked_lengths(x_lengths, x, "x_lengths");
  p.y_lengths = checked_lengths(y_lengths, y, "y_lengths");
  check_finite_points(x, x_lengths, "x");
  check_finite_points(y, y_lengths, "y");
  return p;
}

// grad_dists (B, N, k) of x's dtype and idx (B, N, k) int64 from knn_points(x, y): every index -1 or
// within y's padded size (the backward gathers y[idx]).
inline void check_knn_backward_inputs(const at::Tensor& grad_dists, const at::Tensor& x, const at::Tensor& y,
                                      const at::Tensor& idx) {
  TORCH_CHECK(x.defined() && y.defined() && grad_dists.defined() && idx.defined(),
              "fastperc: knn_points_backward got an undefined tensor");
  TORCH_CHECK(x.dim() == 3 && y.dim() == 3 && x.size(0) == y.size(0) && x.size(2) == y.size(2),
              "fastperc: x and y must be (B, N, D) and (B, M, D), got ", x.sizes(), " and ", y.sizes());
  TORCH_CHECK(y.scalar_type() == x.scalar_type() && grad_dists.scalar_type() == x.scalar_type(),
              "fastperc: x, y and grad_dists must share one dtype, got ", x.scalar_type(), ", ", y.scalar_type(), " and ",
              grad_dists.scalar_type());
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
              "fastperc: x must be float16, bfloat16, float32 or float64, got ", t);
  TORCH_CHECK(idx.dim() == 3 && idx.size(0) == x.size(0) && idx.size(1) == x.size(1) && idx.scalar_type() == at::kLong,
              "fastperc: idx must be (", x.size(0), ", ", x.size(1), ", k) int64, got ", idx.sizes(), " ",
              idx.scalar_type());
  TORCH_CHECK(grad_dists.sizes() == idx.sizes(), "fastperc: grad_dists must have idx's shape ", idx.sizes(), ", got ",
              grad_dists.sizes());
  for (const at::Tensor* t2 : {&y, &grad_dists, &idx})
    TORCH_CHECK(t2->device() == x.device(), "fastperc: every knn_points_backward tensor must be on ", x.device(),
                ", got one on ", t2->device());
  if (idx.numel() > 0) {
    const at::Tensor bad = at::logical_or(idx.lt(-1), idx.ge(y.size(1)));
    TORCH_CHECK(!bad.any().item<bool>(), "fastperc: idx holds indices outside [-1, ", y.size(1), ")");
  }
}

}  // namespace fastperc
