// AVX2 + FMA micro-kernels: 4 x 24 floats and 4 x 12 doubles (12 ymm accumulators each).
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
#include "cpu/isa/pack8_avx2.inc"

GramTile<float> gram_tile_f32_avx2() { return {4, 24, &gram_tile<F32x8, 4, 3>, &pack8_f32}; }
GramTile<double> gram_tile_f64_avx2() { return {4, 12, &gram_tile<F64x4, 4, 3>, nullptr}; }

}  // namespace cpu
}  // namespace fastperc
