// AVX-512F micro-kernels: 8 x 32 floats and 8 x 16 doubles (16 zmm accumulators each).
#include <cstdint>

#include "cpu/isa/gram_tile.h"

#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {

struct F32x16 {
  using T = float;
  using R = __m512;
  static constexpr int W = 16;
  static R load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, R v) { _mm512_storeu_ps(p, v); }
  static R broadcast(T s) { return _mm512_set1_ps(s); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
};

struct F64x8 {
  using T = double;
  using R = __m512d;
  static constexpr int W = 8;
  static R load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, R v) { _mm512_storeu_pd(p, v); }
  static R broadcast(T s) { return _mm512_set1_pd(s); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
};

}  // namespace

#include "cpu/isa/gram_tile_body.inc"
#include "cpu/isa/pack8_avx2.inc"

GramTile<float> gram_tile_f32_avx512() { return {8, 32, &gram_tile<F32x16, 8, 2>, &pack8_f32}; }
GramTile<double> gram_tile_f64_avx512() { return {8, 16, &gram_tile<F64x8, 8, 2>, nullptr}; }

}  // namespace cpu
}  // namespace fastperc
