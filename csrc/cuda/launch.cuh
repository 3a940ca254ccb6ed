#pragma once
// Launch helpers shared by the CUDA kernels: grid-stride loops with 64-bit indices, and the launcher
// that kernel drivers are written against. A driver templated on the launcher runs the kernels on a
// GPU (CudaLaunch) or, in the tests, under the CPU emulator (tests/cuda_emu/emulate.h), so the same
// index math, shared-memory tiling and barriers are exercised without a GPU.
#include <cstdint>

#include <algorithm>
#include <utility>

#if defined(__CUDACC__)
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>
#endif

namespace fastperc {
namespace cuda {

constexpr int kThreads = 256;

// Grid y and z hold at most 65535 blocks: batch items or planes beyond that are launched in chunks of
// kGridChunk. The emulator build sets a tiny chunk so the tests exercise the chunk loops.
#ifndef FASTPERC_GRID_CHUNK
#define FASTPERC_GRID_CHUNK 65535
#endif
constexpr int64_t kGridChunk = FASTPERC_GRID_CHUNK;

// Blocks for n elements at kThreads per block, capped (the loops below stride over the rest).
inline unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

// Kernel headers (cuda/*_device.cuh) may be included by several translation units: their non-template
// kernels and device functions are static.
#define FASTPERC_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

#if defined(__CUDACC__)
// Launches on `stream` and checks the launch.
struct CudaLaunch {
  cudaStream_t stream;
  template <typename... Params, typename... Args>
  void operator()(dim3 grid, dim3 block, void (*kernel)(Params...), Args&&... args) const {
    kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};
#endif

}  // namespace cuda
}  // namespace fastperc
