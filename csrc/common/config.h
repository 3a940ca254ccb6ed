#pragma once
// Lets one helper compile for host and device: CPU kernels call the same per-element math that the
// CUDA kernels run, so the CPU tests exercise it.
#if defined(__CUDACC__)
#define FP_HD __host__ __device__ __forceinline__
#else
#define FP_HD inline
#endif
