#pragma once
// Register-blocked micro-kernels of the CPU Gram: C[MR x NR] += A_panel^T B_panel over kc steps,
// A packed k-major as kc x MR and B as kc x NR (NR = NV vectors of the ISA's width).
//
// Each ISA translation unit (gram_tile_<isa>.cpp) is compiled for its own instruction set with a
// `#pragma GCC target` and includes nothing shared but this file's declarations, so no inline function
// compiled with AVX-512 can be picked by the linker for a machine without it. The driver
// (cpu/gram_kernel.cpp) picks one at run time (cpu/cpu_isa.cpp).
#include <cstdint>

namespace fastperc {
namespace cpu {

using GramTileF32 = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc);
using GramTileF64 = void (*)(int64_t kc, const double* a, const double* b, double* c, int64_t ldc);

template <typename T>
struct GramTile {
  int mr;
  int nr;
  void (*fn)(int64_t kc, const T* a, const T* b, T* c, int64_t ldc);
};

GramTile<float> gram_tile_f32_avx512();
GramTile<double> gram_tile_f64_avx512();
GramTile<float> gram_tile_f32_avx2();
GramTile<double> gram_tile_f64_avx2();
GramTile<float> gram_tile_f32_generic();
GramTile<double> gram_tile_f64_generic();

}  // namespace cpu
}  // namespace fastperc
