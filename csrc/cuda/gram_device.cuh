#pragma once
// Kernels and driver of the CUDA Gram matrix (gram_kernel.cu). The driver takes the launcher
// (cuda/launch.cuh), so the tests also run it under the CPU emulator (tests/cuda_emu).
//
// Grid: x = upper-triangle tile (ti <= tj), y = split of N, z = batch item. Each block writes its
// tile's partial sums to a workspace [B][splits][C][C]; a second kernel adds the splits in a fixed
// order while mirroring and scaling (common/gram_math.h, shared with the CPU kernel). No atomics, so
// results are deterministic run to run.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <type_traits>

#include "common/checks.h"
#include "common/gram_math.h"
#include "cuda/launch.cuh"

namespace fastperc {
namespace cuda {
namespace gram_detail {

constexpr int kTile = 64;      // output tile edge
constexpr int kDepth = 16;     // k step held in shared memory
// kThreads (cuda/launch.cuh) = 256 threads as 16 x 16, 4 x 4 outputs each
constexpr int kPerThread = kTile / 16;

// Loads rows [row0, row0 + 64) x columns [k0, k0 + 16) of one sample into tile[k][row] as acc_t.
// rows_fast picks the thread-to-element map that keeps global reads coalesced for the input strides.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_tile(acc_t (*tile)[kTile + 1], const scalar_t* __restrict__ xb, int64_t sc,
                                          int64_t sn, int64_t C, int64_t k_end, int64_t row0, int64_t k0,
                                          bool rows_fast) {
#pragma unroll
  for (int l = 0; l < (kTile * kDepth) / kThreads; ++l) {
    const int idx = threadIdx.x + l * kThreads;
    const int r = rows_fast ? idx % kTile : idx / kDepth;
    const int kk = rows_fast ? idx / kTile : idx % kDepth;
    const int64_t row = row0 + r, k = k0 + kk;
    tile[kk][r] = (row < C && k < k_end) ? static_cast<acc_t>(xb[row * sc + k * sn]) : acc_t(0);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    gram_partial_kernel(const scalar_t* __restrict__ x, int64_t sb, int64_t sc, int64_t sn, int64_t C, int64_t N,
                        int64_t tiles_per_side, int64_t k_per_split, int64_t splits, int64_t batch_offset,
                        acc_t* __restrict__ partial) {
  __shared__ acc_t a_tile[kDepth][kTile + 1];
  __shared__ acc_t b_tile[kDepth][kTile + 1];
  int64_t ti, tj;
  upper_tile_from_index(blockIdx.x, tiles_per_side, ti, tj);
  const int64_t split = blockIdx.y;
  const int64_t b = batch_offset + blockIdx.z;
  const int64_t k_begin = split * k_per_split;
  const int64_t k_end = k_begin + k_per_split < N ? k_begin + k_per_split : N;
  const scalar_t* xb = x + b * sb;
  const bool rows_fast = sc < sn;  // e.g. channels_last: neighbouring channels are adjacent in memory
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  acc_t acc[kPerThread][kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i)
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) acc[i][j] = acc_t(0);

  for (int64_t k0 = k_begin; k0 < k_end; k0 += kDepth) {
    load_tile(a_tile, xb, sc, sn, C, k_end, ti * kTile, k0, rows_fast);
    load_tile(b_tile, xb, sc, sn, C, k_end, tj * kTile, k0, rows_fast);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      acc_t a[kPerThread], bv[kPerThread];
#pragma unroll
      for (int i = 0; i < kPerThread; ++i) a[i] = a_tile[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) bv[j] = b_tile[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < kPerThread; ++i)
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) acc[i][j] += a[i] * bv[j];
    }
    __syncthreads();
  }

  acc_t* out = partial + (b * splits + split) * C * C;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t row = ti * kTile + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t col = tj * kTile + tx + 16 * j;
      if (row < C && col < C) out[row * C + col] = acc[i][j];
    }
  }
}

template <typename acc_t>
__global__ void gram_reduce_kernel(const acc_t* __restrict__ partial, int64_t splits, int64_t C, int64_t total,
                                   acc_t scale, acc_t* __restrict__ out) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = idx / (C * C), ij = idx % (C * C);
    out[idx] = gram_reduce_element<acc_t>(partial + b * splits * C * C, splits, C * C, C, ij / C, ij % C, scale);
  }
}

// scale * x @ x^T of x (B, C, N) in the accumulation dtype, with the N splits sized for `sms`
// multiprocessors.
template <typename Launch>
at::Tensor gram_forward(const Launch& launch, const at::Tensor& x, double scale, int64_t sms) {
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2);
  const auto acc_type = accumulate_type(x.scalar_type());
  at::Tensor out = at::empty({B, C, C}, x.options().dtype(acc_type));

  const int64_t tiles_per_side = (C + kTile - 1) / kTile;
  const int64_t tiles = tiles_per_side * (tiles_per_side + 1) / 2;
  TORCH_CHECK(tiles <= int64_t{0x7fffffff}, "fastperc: C=", C, " is too large for the CUDA Gram kernel");
  // Split N until there are ~4 blocks per SM, keeping >= 512 columns per split and the workspace
  // under 1 GiB.
  const int64_t elem = acc_type == at::kDouble ? 8 : 4;
  int64_t splits = std::clamp<int64_t>((4 * sms + tiles * B - 1) / (tiles * B), 1, std::max<int64_t>(1, N / 512));
  while (splits > 1 && B * splits * C * C * elem > (int64_t{1} << 30)) splits /= 2;
  splits = std::min<int64_t>(splits, 65535);
  int64_t k_per_split = (N + splits - 1) / splits;
  k_per_split = (k_per_split + kDepth - 1) / kDepth * kDepth;
  splits = (N + k_per_split - 1) / k_per_split;

  at::Tensor partial = at::empty({B, splits, C, C}, out.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_gram_cuda", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    for (int64_t b0 = 0; b0 < B; b0 += kGridChunk) {
      const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(splits),
                      static_cast<unsigned>(std::min<int64_t>(kGridChunk, B - b0)));
      launch(grid, kThreads, gram_partial_kernel<scalar_t, acc_t>, x.const_data_ptr<scalar_t>(), x.stride(0),
             x.stride(1), x.stride(2), C, N, tiles_per_side, k_per_split, splits, b0, partial.data_ptr<acc_t>());
    }
    const int64_t total = B * C * C;
    const int blocks = static_cast<int>(std::min<int64_t>((total + 255) / 256, 65535));
    launch(blocks, 256, gram_reduce_kernel<acc_t>, partial.const_data_ptr<acc_t>(), splits, C, total,
           static_cast<acc_t>(scale), out.data_ptr<acc_t>());
  });
  return out;
}

}  // namespace gram_detail
}  // namespace cuda
}  // namespace fastperc
