// AVX-512F sparse-convolution micro-kernels (see sparse_tile.h). Rows tiles: 6 x 4, 12 x 2 and 8 x 1
// vectors (24, 24 and 8 zmm accumulators); pair tiles 8 x 2, 16 x 1 and 4 x 4
// vectors (16 accumulators each).
#include <algorithm>
#include <cstdint>

#include "cpu/isa/sparse_tile.h"

#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_avx512.inc"
}  // namespace

#include "cpu/isa/sparse_tile_body.inc"

namespace {
// 16 entries a step: a mask of the rows among them, compressed to the front of a register and stored
// whole (compress straight to memory is microcode on Zen 4).
int64_t list_neighbours(const int32_t* entries, int64_t n, int64_t n_rows, int32_t* row, int32_t* pos) {
  // An entry is bad when entry + 1, read unsigned, passes n_rows (so -2 and below wrap high too).
  const uint32_t rows_u32 = static_cast<uint32_t>(std::min<int64_t>(n_rows, UINT32_MAX));
  const __m512i limit = _mm512_set1_epi32(static_cast<int32_t>(rows_u32));
  const __m512i one = _mm512_set1_epi32(1), sixteen = _mm512_set1_epi32(16);
  __m512i at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t count = 0, j = 0;
  for (; j + 16 <= n; j += 16, at = _mm512_add_epi32(at, sixteen)) {
    const __m512i v = _mm512_loadu_si512(entries + j);
    if (_mm512_cmpgt_epu32_mask(_mm512_add_epi32(v, one), limit) != 0) break;  // the scalar loop names it
    const __mmask16 found = _mm512_cmpge_epi32_mask(v, _mm512_setzero_si512());
    _mm512_storeu_si512(row + count, _mm512_maskz_compress_epi32(found, v));
    _mm512_storeu_si512(pos + count, _mm512_maskz_compress_epi32(found, at));
    count += __builtin_popcount(found);
  }
  return list_neighbours_from(entries, j, n, n_rows, row, pos, count);
}
}  // namespace

SparseTile<float> sparse_tile_f32_avx512() {
  return {{rows_variant<F32x16, 6, 4>(), rows_variant<F32x16, 12, 2>(), rows_variant<F32x16, 8, 1>()}, 3,
          {pairs_variant<F32x16, 8, 2>(), pairs_variant<F32x16, 16, 1>(), pairs_variant<F32x16, 4, 4>()}, 3,
          &list_neighbours};
}
SparseTile<double> sparse_tile_f64_avx512() {
  return {{rows_variant<F64x8, 6, 4>(), rows_variant<F64x8, 12, 2>(), rows_variant<F64x8, 8, 1>()}, 3,
          {pairs_variant<F64x8, 8, 2>(), pairs_variant<F64x8, 16, 1>(), pairs_variant<F64x8, 4, 4>()}, 3,
          &list_neighbours};
}

}  // namespace cpu
}  // namespace fastperc
