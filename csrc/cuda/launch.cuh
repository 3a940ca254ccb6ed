#pragma once
// Launch helpers shared by the CUDA kernels: grid-stride loops with 64-bit indices.
#include <cstdint>

#include <algorithm>

namespace fastperc {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for n elements at kThreads per block, capped (the loops below stride over the rest).
inline unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

#define FASTPERC_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

}  // namespace cuda
}  // namespace fastperc
