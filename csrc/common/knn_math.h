#pragma once
// Per-pair math of the nearest-neighbour ops, compiled for host and device: the CPU kernels call the
// same helpers the CUDA kernels run, so the CPU tests exercise them.
//
// Exactness: every device ranks by the same float64 value, sum_d (x_d - y_d)^2 added in dimension
// order with no fused multiply-add (the reference, fastperc/reference/knn.py, computes the same), and
// breaks ties by the lowest index. So indices agree across devices bit for bit.
#include <cstdint>

#include "common/config.h"

namespace fastperc {

// The neighbour ops take k and D up to these (one thread keeps its k best in registers on CUDA);
// larger ones run the reference (fastperc.functional.chamfer).
constexpr int kKnnMaxK = 32;
constexpr int kKnnMaxDim = 32;

// a * a + b, rounded after each operation (nvcc would otherwise contract it into one FMA).
FP_HD double knn_square_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(__dmul_rn(a, a), b);
#else
  return a * a + b;
#endif
}

// Squared distance between q (dim values, unit stride) and the point at p with element stride
// stride, in float64.
template <typename T>
FP_HD double knn_sq_dist(const double* q, const T* p, int64_t stride, int dim) {
  double sum = 0.0;
  for (int d = 0; d < dim; ++d) sum = knn_square_add(q[d] - static_cast<double>(p[d * stride]), sum);
  return sum;
}

// (d, i) orders before (best_d, best_i): nearer, or as near with a lower index.
FP_HD bool knn_before(double d, int64_t i, double best_d, int64_t best_i) {
  return d < best_d || (d == best_d && i < best_i);
}

// Inserts candidate (d, i) into the k best so far, kept sorted by (distance, index); the arrays start
// filled with (inf, kKnnNoIndex). Candidates may come in any order: the result is the same.
constexpr int64_t kKnnNoIndex = INT64_MAX;
FP_HD void knn_insert(double d, int64_t i, double* best_d, int64_t* best_i, int k) {
  if (!knn_before(d, i, best_d[k - 1], best_i[k - 1])) return;
  int slot = k - 1;
  while (slot > 0 && knn_before(d, i, best_d[slot - 1], best_i[slot - 1])) {
    best_d[slot] = best_d[slot - 1];
    best_i[slot] = best_i[slot - 1];
    --slot;
  }
  best_d[slot] = d;
  best_i[slot] = i;
}

}  // namespace fastperc
