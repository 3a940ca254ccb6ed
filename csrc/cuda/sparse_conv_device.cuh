#pragma once
// Kernels and drivers of the CUDA sparse convolution (sparse_conv_kernel.cu). The drivers take the
// launcher (cuda/launch.cuh), so the tests also run them under the CPU emulator (tests/cuda_emu).
//
// Forward: a block owns a 64 x 64 tile of (output rows x output channels) and walks the offsets k in
// order. Per offset it reads the tile's 64 map entries, skips the offset when none has a neighbour,
// and otherwise multiplies the gathered input rows (missing neighbours read as zero) with W[k] through
// 16-deep shared-memory slices, accumulating in registers. Every output sums its terms in the same
// order on every run. The input gradient is the same kernel on the inverted map with W[k]^T.
// Weight gradient: dW[k] = sum_j x[map[k, j]]^T g[j], split over fixed ranges of j into a workspace
// and summed in split order by a second kernel (the split count depends only on the sizes).
// float16 and bfloat16 accumulate in float32, float32 in float32, float64 in float64.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zero.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>

#include "common/sparse_checks.h"
#include "cuda/launch.cuh"

namespace fastperc {
namespace cuda {
namespace sparse_conv {

constexpr int kTile = 64;   // rows and columns of a block's output tile
constexpr int kDepth = 16;  // reduction slice held in shared memory
constexpr int kPerThread = kTile / 16;  // 256 threads as 16 x 16, each 4 x 4 outputs
constexpr int64_t kRowsPerSplit = 4096;  // weight gradient: pairs of one offset summed per block
constexpr int64_t kMaxSplits = 64;

using ull = unsigned long long;
constexpr ull kNoEntry = std::numeric_limits<ull>::max();

template <typename T>
using acc_type_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// out[j] = sum_k rows[map[k, j]] @ w[k]: rows (n_rows, cin), w (K, cin, cout) contiguous, out (n_out, cout).
// acc[i][j] += sum over the slice of a_tile[d][ty + 16 i] * b_tile[d][tx + 16 j]: one thread's 4 x 4
// outputs of a 64 x 64 tile from one kDepth-deep slice in shared memory (both GEMM kernels below).
template <typename acc_t>
__device__ __forceinline__ void multiply_slice(const acc_t (&a_tile)[kDepth][kTile + 1],
                                               const acc_t (&b_tile)[kDepth][kTile + 1], int tx, int ty,
                                               acc_t (&acc)[kPerThread][kPerThread]) {
#pragma unroll
  for (int d = 0; d < kDepth; ++d) {
    acc_t a[kPerThread], b[kPerThread];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) a[i] = a_tile[d][ty + 16 * i];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) b[j] = b_tile[d][tx + 16 * j];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i)
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) acc[i][j] += a[i] * b[j];
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    gather_gemm_kernel(const scalar_t* __restrict__ rows, int64_t cin, const int32_t* __restrict__ map,
                       int64_t volume, int64_t n_out, const scalar_t* __restrict__ w, int64_t cout,
                       scalar_t* __restrict__ out) {
  __shared__ int64_t src[kTile];
  __shared__ acc_t a_tile[kDepth][kTile + 1];  // [channel][row]: gathered inputs
  __shared__ acc_t b_tile[kDepth][kTile + 1];  // [channel][column]: weights
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile, n0 = static_cast<int64_t>(blockIdx.y) * kTile;
  acc_t acc[kPerThread][kPerThread] = {};

  for (int64_t k = 0; k < volume; ++k) {
    if (tid < kTile) src[tid] = j0 + tid < n_out ? map[k * n_out + j0 + tid] : -1;
    // Uniform across the block: skip offsets where no output of the tile has a neighbour.
    if (!__syncthreads_or(tid < kTile && src[tid] >= 0)) continue;
    const scalar_t* wk = w + k * cin * cout;
    for (int64_t c0 = 0; c0 < cin; c0 += kDepth) {
#pragma unroll
      for (int l = 0; l < kTile * kDepth / kThreads; ++l) {
        const int idx = tid + l * kThreads;
        // Inputs: 16 consecutive threads read 16 consecutive channels of one gathered row.
        const int r = idx / kDepth, cc = idx % kDepth;
        const int64_t row = src[r];
        a_tile[cc][r] = row >= 0 && c0 + cc < cin ? static_cast<acc_t>(rows[row * cin + c0 + cc]) : acc_t(0);
        // Weights: consecutive threads read consecutive output channels.
        const int cw = idx / kTile, n = idx % kTile;
        b_tile[cw][n] = c0 + cw < cin && n0 + n < cout ? static_cast<acc_t>(wk[(c0 + cw) * cout + n0 + n]) : acc_t(0);
      }
      __syncthreads();
      multiply_slice(a_tile, b_tile, tx, ty, acc);
      __syncthreads();
    }
  }
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t j = j0 + ty + 16 * i;
#pragma unroll
    for (int jj = 0; jj < kPerThread; ++jj) {
      const int64_t n = n0 + tx + 16 * jj;
      if (j < n_out && n < cout) out[j * cout + n] = static_cast<scalar_t>(acc[i][jj]);
    }
  }
}

// partial[s][k] = sum over j in split s of x[map[k, j]]^T g[j]: a (cin x cout) tile per block.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    weight_grad_kernel(const scalar_t* __restrict__ x, int64_t cin, const scalar_t* __restrict__ g, int64_t cout,
                       const int32_t* __restrict__ map, int64_t volume, int64_t n_out, int64_t rows_per_split,
                       int64_t col_tiles, acc_t* __restrict__ partial) {
  __shared__ int64_t src[kDepth];
  __shared__ acc_t a_tile[kDepth][kTile + 1];  // [pair][input channel]
  __shared__ acc_t b_tile[kDepth][kTile + 1];  // [pair][output channel]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t c0 = (blockIdx.x / col_tiles) * kTile, n0 = (blockIdx.x % col_tiles) * kTile;
  const int64_t k = blockIdx.y, split = blockIdx.z;
  const int64_t j_begin = split * rows_per_split;
  const int64_t j_end = j_begin + rows_per_split < n_out ? j_begin + rows_per_split : n_out;
  acc_t acc[kPerThread][kPerThread] = {};

  for (int64_t jb = j_begin; jb < j_end; jb += kDepth) {
    if (tid < kDepth) src[tid] = jb + tid < j_end ? map[k * n_out + jb + tid] : -1;
    if (!__syncthreads_or(tid < kDepth && src[tid] >= 0)) continue;
#pragma unroll
    for (int l = 0; l < kTile * kDepth / kThreads; ++l) {
      const int idx = tid + l * kThreads;
      const int p = idx / kTile, col = idx % kTile;  // consecutive threads: consecutive channels
      const int64_t row = src[p];
      a_tile[p][col] = row >= 0 && c0 + col < cin ? static_cast<acc_t>(x[row * cin + c0 + col]) : acc_t(0);
      b_tile[p][col] = row >= 0 && n0 + col < cout ? static_cast<acc_t>(g[(jb + p) * cout + n0 + col]) : acc_t(0);
    }
    __syncthreads();
    multiply_slice(a_tile, b_tile, tx, ty, acc);
    __syncthreads();
  }
  acc_t* out = partial + (split * volume + k) * cin * cout;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t c = c0 + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (c < cin && n < cout) out[c * cout + n] = acc[i][j];
    }
  }
}

// dW = sum over splits, in split order.
template <typename scalar_t, typename acc_t>
__global__ void sum_splits(const acc_t* __restrict__ partial, int64_t splits, int64_t size, scalar_t* __restrict__ dw) {
  FASTPERC_GRID_LOOP(i, size) {
    acc_t s = 0;
    for (int64_t p = 0; p < splits; ++p) s += partial[p * size + i];
    dw[i] = static_cast<scalar_t>(s);
  }
}

// Flags the first map entry that is neither -1 nor a row < n_rows.
static __global__ void check_map_entries(const int32_t* __restrict__ map, int64_t size, int64_t n_rows, ull* __restrict__ bad) {
  FASTPERC_GRID_LOOP(i, size) {
    const int64_t v = map[i];
    if (v < -1 || v >= n_rows) atomicMin(bad, static_cast<ull>(i));
  }
}

static __global__ void scatter_inverse(const int32_t* __restrict__ map, int64_t volume, int64_t n_out, int64_t n_in,
                                       int32_t* __restrict__ inv) {
  FASTPERC_GRID_LOOP(idx, volume * n_out) {
    const int64_t v = map[idx];
    if (v >= 0) inv[(idx / n_out) * n_in + v] = static_cast<int32_t>(idx % n_out);  // one output per input and offset
  }
}

// Raises, before any kernel reads a row, if an entry is not -1 or a row < n_rows.
template <typename Launch>
void check_map_rows(const Launch& launch, const at::Tensor& map, int64_t n_rows, const char* name = "kernel map",
                    const char* rows = "feats") {
  if (map.numel() == 0) return;
  at::Tensor bad = at::full({1}, static_cast<int64_t>(kNoEntry), map.options().dtype(at::kLong));
  launch(grid_for(map.numel()), kThreads, check_map_entries, map.const_data_ptr<int32_t>(), map.numel(), n_rows,
         reinterpret_cast<ull*>(bad.data_ptr<int64_t>()));
  const ull first = static_cast<ull>(bad.cpu().const_data_ptr<int64_t>()[0]);
  if (first == kNoEntry) return;
  const int64_t value = map.view(-1)[static_cast<int64_t>(first)].cpu().const_data_ptr<int32_t>()[0];
  TORCH_CHECK(false, "fastperc: ", name, " entries must be -1 or rows of ", rows, " (< ", n_rows, "), got ", value);
}

// Flags (with 1) a pair that one map lists and the other does not (common/sparse_math.h).
static __global__ void check_inverse_entries(const int32_t* __restrict__ map, int64_t n_map,
                                             const int32_t* __restrict__ other, int64_t n_other, int64_t volume,
                                             int* __restrict__ bad) {
  FASTPERC_GRID_LOOP(idx, volume * n_map) {
    if (!inverse_pair_ok(map, n_map, other, n_other, idx / n_map, idx % n_map)) *bad = 1;
  }
}

// Whether other (K, n_other) lists, read the other way, every pair map (K, n_map) lists (both already
// range-checked).
template <typename Launch>
bool lists_every_pair_of(const Launch& launch, const at::Tensor& other, const at::Tensor& map) {
  const int64_t volume = map.size(0), n_map = map.size(1), n_other = other.size(1);
  at::Tensor bad = at::full({1}, 0, map.options());
  if (n_map > 0)
    launch(grid_for(volume * n_map), kThreads, check_inverse_entries, map.const_data_ptr<int32_t>(), n_map,
           other.const_data_ptr<int32_t>(), n_other, volume, bad.data_ptr<int>());
  return bad.cpu().const_data_ptr<int>()[0] == 0;
}

// Raises unless inv (K, n_in) is kmap (K, n_out) read the other way (both already range-checked).
template <typename Launch>
void check_inverse_of(const Launch& launch, const at::Tensor& kmap, const at::Tensor& inv) {
  TORCH_CHECK(lists_every_pair_of(launch, inv, kmap) && lists_every_pair_of(launch, kmap, inv),
              "fastperc: inv_map is not the inverse of kmap: pass the inverse of this map "
              "(fastperc.sparse.functional.invert_map) or None to rebuild it");
}

inline void check_grid_limits(int64_t n_tiles, int64_t col_tiles, int64_t volume) {
  TORCH_CHECK(n_tiles < (int64_t{1} << 31) && col_tiles <= 65535 && volume <= 65535,
              "fastperc: sparse convolution sizes beyond the CUDA grid limits (rows ", n_tiles * kTile, ", C_out ",
              col_tiles * kTile, ", K ", volume, ")");
}

// out (n_out, cout) = gather-GEMM of rows with w (K, cin, cout) over map (K, n_out); all contiguous.
template <typename scalar_t, typename Launch>
void gather_gemm(const Launch& launch, const at::Tensor& rows, const at::Tensor& map, const at::Tensor& w,
                 at::Tensor& out) {
  const int64_t volume = w.size(0), cin = w.size(1), cout = w.size(2), n_out = map.size(1);
  if (n_out == 0) return;
  const int64_t row_tiles = (n_out + kTile - 1) / kTile, col_tiles = (cout + kTile - 1) / kTile;
  check_grid_limits(row_tiles, col_tiles, volume);
  launch(dim3(static_cast<unsigned>(row_tiles), static_cast<unsigned>(col_tiles)), kThreads,
         gather_gemm_kernel<scalar_t, acc_type_t<scalar_t>>, rows.const_data_ptr<scalar_t>(), cin,
         map.const_data_ptr<int32_t>(), volume, n_out, w.const_data_ptr<scalar_t>(), cout, out.data_ptr<scalar_t>());
}

// The op sparse_conv on the launcher's device (the caller checked the device).
template <typename Launch>
at::Tensor forward(const Launch& launch, const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& kmap,
                   const std::optional<at::Tensor>& inv_map) {
  check_sparse_features(feats, weight, /*half_types=*/true);
  check_kernel_map(kmap, weight.size(0), feats);
  if (inv_map.has_value() && inv_map->defined()) check_inverse_map(*inv_map, weight.size(0), feats);
  const at::Tensor f = feats.contiguous(), w = weight.contiguous(), m = kmap.contiguous();
  check_map_rows(launch, m, f.size(0));
  at::Tensor out = at::empty({m.size(1), w.size(2)}, f.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "fastperc_sparse_conv_cuda",
                                  [&] { gather_gemm<scalar_t>(launch, f, m, w, out); });
  return out;
}

// The op sparse_conv_backward on the launcher's device (the caller checked the device): (grad_feats,
// grad_weight), each only where output_mask asks for it (else empty); without inv_map the inverse map
// is built here when grad_feats is wanted.
template <typename Launch>
std::tuple<at::Tensor, at::Tensor> backward(const Launch& launch, const at::Tensor& grad_out, const at::Tensor& feats,
                                            const at::Tensor& weight, const at::Tensor& kmap,
                                            const std::optional<at::Tensor>& inv_map, std::array<bool, 2> output_mask) {
  at::Tensor inv = check_sparse_conv_backward(grad_out, feats, weight, kmap, inv_map, /*half_types=*/true);
  const at::Tensor g = grad_out.contiguous(), f = feats.contiguous(), w = weight.contiguous(), m = kmap.contiguous();
  const int64_t volume = w.size(0), cin = w.size(1), cout = w.size(2), n_in = f.size(0), n_out = m.size(1);
  check_map_rows(launch, m, n_in);
  if (inv.defined()) {
    check_map_rows(launch, inv, n_out, "inv_map", "grad_out");
    check_inverse_of(launch, m, inv);
  }
  const bool want_feats = output_mask[0], want_weight = output_mask[1];
  at::Tensor grad_feats, grad_weight;  // (not structured bindings: the dispatch lambda captures them)
  std::tie(grad_feats, grad_weight) = sparse_backward_outputs(f, w, output_mask, n_out == 0 || n_in == 0);
  if (n_out == 0 || n_in == 0) return {grad_feats, grad_weight};
  if (want_feats && !inv.defined()) {
    inv = at::full({volume, n_in}, -1, m.options());
    launch(grid_for(volume * n_out), kThreads, scatter_inverse, m.const_data_ptr<int32_t>(), volume, n_out, n_in,
           inv.data_ptr<int32_t>());
    // A map that feeds one input to two outputs at an offset has no inverse: the scatter kept one of
    // the two, and the other's gradient would silently be dropped.
    TORCH_CHECK(lists_every_pair_of(launch, inv, m),
                "fastperc: kernel map feeds an input row to two outputs at one offset; a convolution's map lists "
                "each input at most once per offset");
  }
  const at::Tensor wt = w.transpose(1, 2).contiguous();  // (K, cout, cin)
  // Fixed splits of the pairs (from the sizes only, so the sums are the same on every run), fewer
  // when the float workspace would pass 256 MiB.
  const auto acc = accumulate_type(f.scalar_type());
  const int64_t elem = acc == at::kDouble ? 8 : 4, dw_size = volume * cin * cout;
  int64_t splits = std::clamp<int64_t>((n_out + kRowsPerSplit - 1) / kRowsPerSplit, 1, kMaxSplits);
  while (splits > 1 && splits * dw_size * elem > (int64_t{256} << 20)) splits = (splits + 1) / 2;
  int64_t rows_per_split = (n_out + splits - 1) / splits;
  rows_per_split = (rows_per_split + kDepth - 1) / kDepth * kDepth;
  splits = (n_out + rows_per_split - 1) / rows_per_split;
  const int64_t row_tiles = (cin + kTile - 1) / kTile, col_tiles = (cout + kTile - 1) / kTile;
  TORCH_CHECK(row_tiles * col_tiles < (int64_t{1} << 31) && volume <= 65535,
              "fastperc: weight (", w.sizes(), ") beyond the CUDA grid limits");
  at::Tensor partial = at::empty({want_weight ? splits : 0, volume, cin, cout}, f.options().dtype(acc));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "fastperc_sparse_conv_backward_cuda", [&] {
    using acc_t = acc_type_t<scalar_t>;
    if (want_feats) gather_gemm<scalar_t>(launch, g, inv, wt, grad_feats);
    if (!want_weight) return;
    launch(dim3(static_cast<unsigned>(row_tiles * col_tiles), static_cast<unsigned>(volume),
                static_cast<unsigned>(splits)),
           kThreads, weight_grad_kernel<scalar_t, acc_t>, f.const_data_ptr<scalar_t>(), cin,
           g.const_data_ptr<scalar_t>(), cout, m.const_data_ptr<int32_t>(), volume, n_out, rows_per_split, col_tiles,
           partial.data_ptr<acc_t>());
    launch(grid_for(dw_size), kThreads, sum_splits<scalar_t, acc_t>, partial.const_data_ptr<acc_t>(), splits, dw_size,
           grad_weight.data_ptr<scalar_t>());
  });
  return {grad_feats, grad_weight};
}

}  // namespace sparse_conv
}  // namespace cuda
}  // namespace fastperc
