#pragma once
// Lets one helper compile for host and device: CPU kernels call the same per-element math that the
// CUDA kernels run, so the CPU tests exercise it.
// Internal linkage (static): the helpers are also compiled into the per-ISA CPU translation units,
// and a shared inline copy built with AVX-512 must never be picked by the linker for other callers.
#if defined(__CUDACC__)
#define FP_HD static __host__ __device__ __forceinline__
#else
#define FP_HD static inline
#endif
// Member functions of the small structs passed to kernels by value (strides, sizes).
#if defined(__CUDACC__)
#define FP_HD_MEMBER __host__ __device__ __forceinline__
#else
#define FP_HD_MEMBER inline
#endif
