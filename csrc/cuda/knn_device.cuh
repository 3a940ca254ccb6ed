#pragma once
// Kernels and drivers of the CUDA nearest-neighbour ops (knn_kernel.cu). The drivers take the launcher
// (cuda/launch.cuh), so the tests also run them under the CPU emulator (tests/cuda_emu).
//
// Forward: brute force, tiled through shared memory. A block of kQueries threads owns kQueries queries
// of one batch item (one per thread, its k best in registers); the block walks the targets in tiles of
// kTileValues float64 values that every thread then reads from shared memory. Ranking and ties follow
// common/knn_math.h (float64, no FMA, lowest index), so the indices equal the CPU kernel's.
// Backward: grad_x, one thread per query coordinate, sums its k terms in order. grad_y: the pairs are
// grouped by target with a stable sort (deterministic), and one thread per target coordinate sums its
// pairs in ascending (i, k) order: no atomics, the same result on every run.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/where.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>

#include "common/knn_checks.h"
#include "cuda/launch.cuh"

namespace fastperc {
namespace cuda {
namespace knn {

constexpr int kQueries = 128;       // threads per block, one query each
constexpr int kTileValues = 2048;   // float64 target coordinates per shared-memory tile (16 KB)

template <typename T>
using acc_type_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Element strides of a (B, N, D) tensor.
struct CloudStrides {
  int64_t b, n, d;
};

inline CloudStrides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

// Batch items [b0, b0 + gridDim.y): for each query i < x_lengths[b], its k best among the first
// y_lengths[b] targets into out_d / out_i ((B, N, k) contiguous); the rest of a row is left as filled.
template <typename T>
__global__ void __launch_bounds__(kQueries)
    knn_forward_kernel(const T* x, CloudStrides xs, const T* y, CloudStrides ys, const int64_t* x_lengths,
                       const int64_t* y_lengths, int64_t b0, int64_t n, int dim, int k, T* out_d, int64_t* out_i) {
  __shared__ double tile[kTileValues];
  const int64_t b = b0 + blockIdx.y;
  const int64_t nx = x_lengths[b], ny = y_lengths[b];
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kQueries;
  if (first >= nx || ny == 0) return;  // the whole block: no barrier is skipped by only some threads
  const int64_t i = first + threadIdx.x;
  const bool active = i < nx;
  const int kk = static_cast<int>(ny < k ? ny : k);
  double q[kKnnMaxDim];
  double best_d[kKnnMaxK];
  int64_t best_i[kKnnMaxK];
  for (int j = 0; j < kk; ++j) {
    best_d[j] = HUGE_VAL;
    best_i[j] = kKnnNoIndex;
  }
  if (active)
    for (int d = 0; d < dim; ++d) q[d] = static_cast<double>(x[b * xs.b + i * xs.n + d * xs.d]);
  const int64_t per_tile = kTileValues / dim;
  for (int64_t j0 = 0; j0 < ny; j0 += per_tile) {
    const int64_t len = ny - j0 < per_tile ? ny - j0 : per_tile;
    for (int64_t e = threadIdx.x; e < len * dim; e += kQueries)
      tile[e] = static_cast<double>(y[b * ys.b + (j0 + e / dim) * ys.n + (e % dim) * ys.d]);
    __syncthreads();
    if (active)
      for (int64_t j = 0; j < len; ++j) {
        const double d = knn_sq_dist(q, &tile[j * dim], 1, dim);
        if (d <= best_d[kk - 1]) knn_insert(d, j0 + j, best_d, best_i, kk);
      }
    __syncthreads();
  }
  if (active) {
    const int64_t row = (b * n + i) * k;
    for (int j = 0; j < kk; ++j) {
      out_d[row + j] = static_cast<T>(best_d[j]);
      out_i[row + j] = best_i[j];
    }
  }
}

// 2 g (x_i - y_j) in dimension d, for pair (b, i, kth) with target j.
template <typename T>
__device__ __forceinline__ acc_type_t<T> pair_term(const T* g, CloudStrides gs, const T* x, CloudStrides xs, const T* y,
                                                   CloudStrides ys, int64_t b, int64_t i, int64_t kth, int64_t j,
                                                   int64_t d) {
  using acc_t = acc_type_t<T>;
  return acc_t(2) * static_cast<acc_t>(g[b * gs.b + i * gs.n + kth * gs.d]) *
         (static_cast<acc_t>(x[b * xs.b + i * xs.n + d * xs.d]) - static_cast<acc_t>(y[b * ys.b + j * ys.n + d * ys.d]));
}

// grad_x (B, N, D) contiguous: one thread per coordinate.
template <typename T>
__global__ void knn_grad_x_kernel(const T* g, CloudStrides gs, const T* x, CloudStrides xs, const T* y,
                                  CloudStrides ys, const int64_t* idx, int64_t n, int64_t dim, int64_t k, int64_t total,
                                  T* grad_x) {
  FASTPERC_GRID_LOOP(e, total) {
    const int64_t d = e % dim, bi = e / dim, b = bi / n, i = bi % n;
    acc_type_t<T> sum = 0;
    for (int64_t kth = 0; kth < k; ++kth) {
      const int64_t j = idx[bi * k + kth];
      if (j >= 0) sum += pair_term(g, gs, x, xs, y, ys, b, i, kth, j, d);
    }
    grad_x[e] = static_cast<T>(sum);
  }
}

// grad_y (B, M, D) contiguous: target t = b * M + j sums pairs order[start[t] .. start[t + 1]) (flat
// (b, i, k) indices, ascending within the target).
template <typename T>
__global__ void knn_grad_y_kernel(const T* g, CloudStrides gs, const T* x, CloudStrides xs, const T* y,
                                  CloudStrides ys, const int64_t* order, const int64_t* start, int64_t n, int64_t m,
                                  int64_t dim, int64_t k, int64_t total, T* grad_y) {
  FASTPERC_GRID_LOOP(e, total) {
    const int64_t d = e % dim, t = e / dim, b = t / m, j = t % m;
    acc_type_t<T> sum = 0;
    for (int64_t s = start[t]; s < start[t + 1]; ++s) {
      const int64_t pair = order[s], i = (pair / k) % n, kth = pair % k;
      sum += pair_term(g, gs, x, xs, y, ys, b, i, kth, j, d);
    }
    grad_y[e] = static_cast<T>(-sum);
  }
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor> forward(const Launch& launch, const at::Tensor& x, const at::Tensor& y,
                                           const at::Tensor& x_lengths, const at::Tensor& y_lengths, int64_t k) {
  const KnnProblem p = check_knn_inputs(x, y, x_lengths, y_lengths, k);
  at::Tensor dists = at::full({p.B, p.N, p.K}, std::numeric_limits<double>::infinity(), x.options());
  at::Tensor idx = at::full({p.B, p.N, p.K}, -1, x.options().dtype(at::kLong));
  if (p.N == 0 || p.M == 0) return {dists, idx};
  const at::Tensor xl = x_lengths.contiguous(), yl = y_lengths.contiguous();
  const unsigned blocks = static_cast<unsigned>((p.N + kQueries - 1) / kQueries);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "knn_points_cuda", [&] {
    for (int64_t b0 = 0; b0 < p.B; b0 += kGridChunk) {
      const unsigned items = static_cast<unsigned>(std::min(kGridChunk, p.B - b0));
      launch(dim3(blocks, items), dim3(kQueries), &knn_forward_kernel<scalar_t>, x.const_data_ptr<scalar_t>(),
             strides_of(x), y.const_data_ptr<scalar_t>(), strides_of(y), xl.const_data_ptr<int64_t>(),
             yl.const_data_ptr<int64_t>(), b0, p.N, static_cast<int>(p.D), static_cast<int>(p.K),
             dists.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
    }
  });
  return {dists, idx};
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor> backward(const Launch& launch, const at::Tensor& grad_dists, const at::Tensor& x,
                                            const at::Tensor& y, const at::Tensor& idx_in) {
  check_knn_backward_inputs(grad_dists, x, y, idx_in);
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), D = x.size(2), K = idx_in.size(2);
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_y = at::empty(y.sizes(), y.options());
  const at::Tensor idx = idx_in.contiguous();
  // Pairs grouped by target: key b * M + j (missing neighbours after every target), stable order.
  const at::Tensor batch = at::arange(B, idx.options()).mul_(M).view({B, 1, 1});
  const at::Tensor keys = at::where(idx.ge(0), idx.add(batch), B * M).view({-1});
  at::Tensor sorted_keys, order;  // (not structured bindings: the dispatch lambda below captures order)
  std::tie(sorted_keys, order) = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor start = at::searchsorted(sorted_keys, at::arange(B * M + 1, idx.options()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "knn_points_backward_cuda", [&] {
    const scalar_t* g = grad_dists.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    if (grad_x.numel() > 0)
      launch(dim3(grid_for(grad_x.numel())), dim3(kThreads), &knn_grad_x_kernel<scalar_t>, g, strides_of(grad_dists),
             xp, strides_of(x), yp, strides_of(y), idx.const_data_ptr<int64_t>(), N, D, K, grad_x.numel(),
             grad_x.data_ptr<scalar_t>());
    if (grad_y.numel() > 0)
      launch(dim3(grid_for(grad_y.numel())), dim3(kThreads), &knn_grad_y_kernel<scalar_t>, g, strides_of(grad_dists),
             xp, strides_of(x), yp, strides_of(y), order.const_data_ptr<int64_t>(), start.const_data_ptr<int64_t>(), N,
             M, D, K, grad_y.numel(), grad_y.data_ptr<scalar_t>());
  });
  return {grad_x, grad_y};
}

}  // namespace knn
}  // namespace cuda
}  // namespace fastperc
