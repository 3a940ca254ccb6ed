// AVX512-BF16 micro-kernel of the bfloat16 Gram: 8 x 32 float accumulators fed by vdpbf16ps, which
// multiplies pairs of bfloat16 exactly and adds them in float32. Only called where the CPU has it.
#include <cstdint>

#include "cpu/isa/gram_tile.h"

#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {

template <int MR, int NV>
void gram_tile_bf16(int64_t pairs, const uint32_t* a, int64_t lda, const uint32_t* b, int64_t ldb, float* c,
                    int64_t ldc, bool accumulate) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * ldc + v * 16) : _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + p * ldb + v * 16);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[p * lda + r]));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + r * ldc + v * 16, acc[r][v]);
}

}  // namespace

GramTileBf16 gram_tile_bf16_avx512() { return {8, 32, &gram_tile_bf16<8, 2>}; }

}  // namespace cpu
}  // namespace fastperc
