// AVX2 + FMA micro-kernels: 6 x 16 floats (12 ymm accumulators) and 6 x 8 doubles.
#include <cstdint>

#include "cpu/isa/gram_tile.h"

#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {

struct F32x8 {
  using T = float;
  using R = __m256;
  static constexpr int W = 8;
  static R load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, R v) { _mm256_storeu_ps(p, v); }
  static R broadcast(T s) { return _mm256_set1_ps(s); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
};

struct F64x4 {
  using T = double;
  using R = __m256d;
  static constexpr int W = 4;
  static R load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, R v) { _mm256_storeu_pd(p, v); }
  static R broadcast(T s) { return _mm256_set1_pd(s); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
};

}  // namespace

#include "cpu/isa/gram_tile_body.inc"

GramTile<float> gram_tile_f32_avx2() { return {6, 16, &gram_tile<F32x8, 6, 2>}; }
GramTile<double> gram_tile_f64_avx2() { return {6, 8, &gram_tile<F64x4, 6, 2>}; }

}  // namespace cpu
}  // namespace fastperc
