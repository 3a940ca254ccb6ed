// AVX2 + FMA sparse-convolution micro-kernels (see sparse_tile.h); 16 ymm registers, so rows tiles of
// 3 x 4, 4 x 3 and 6 x 2 vectors (12 accumulators) and 8 x 1; pair tiles 4 x 2, 8 x 1 and 2 x 4
// vectors (8 accumulators). The 3 x 4 tile covers 32 columns: at 64 of them it reads each gathered row
// twice where 6 x 2 read it four times, and ran the 10 cm LiDAR C = 64 forward 5% faster (RESULTS.md).
#include <algorithm>
#include <array>
#include <cstdint>

#include "cpu/isa/sparse_tile.h"

#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_avx2.inc"
}  // namespace

#include "cpu/isa/sparse_tile_body.inc"

namespace {
// For each 8-bit mask, the lanes set in it in order, 3 bits a lane: the permutation that moves them to
// the front of a register (AVX2 has no compress instruction).
constexpr std::array<uint32_t, 256> kFrontLanes = [] {
  std::array<uint32_t, 256> table{};
  for (uint32_t mask = 0; mask < 256; ++mask)
    for (uint32_t lane = 0, n = 0; lane < 8; ++lane)
      if (mask >> lane & 1) table[mask] |= lane << (3 * n++);
  return table;
}();

// 8 entries a step: a mask of the rows among them, moved to the front of a register and stored whole.
int64_t list_neighbours(const int32_t* entries, int64_t n, int64_t n_rows, int32_t* row, int32_t* pos) {
  const __m256i minus_one = _mm256_set1_epi32(-1), eight = _mm256_set1_epi32(8);
  const int64_t last = std::min<int64_t>(n_rows, INT32_MAX + int64_t{1}) - 1;  // -1 when there are no rows
  const __m256i last_row = _mm256_set1_epi32(static_cast<int32_t>(last));
  const __m256i shifts = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21), seven = _mm256_set1_epi32(7);
  __m256i at = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t count = 0, j = 0;
  for (; j + 8 <= n; j += 8, at = _mm256_add_epi32(at, eight)) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(entries + j));
    const __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi32(minus_one, v), _mm256_cmpgt_epi32(v, last_row));
    if (!_mm256_testz_si256(bad, bad)) break;  // the scalar loop names it
    const int found = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(v, minus_one)));
    const __m256i lanes = _mm256_set1_epi32(static_cast<int32_t>(kFrontLanes[found]));
    const __m256i front = _mm256_and_si256(_mm256_srlv_epi32(lanes, shifts), seven);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + count), _mm256_permutevar8x32_epi32(v, front));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pos + count), _mm256_permutevar8x32_epi32(at, front));
    count += __builtin_popcount(found);
  }
  return list_neighbours_from(entries, j, n, n_rows, row, pos, count);
}
}  // namespace

SparseTile<float> sparse_tile_f32_avx2() {
  return {{rows_variant<F32x8, 3, 4>(), rows_variant<F32x8, 4, 3>(), rows_variant<F32x8, 6, 2>(),
           rows_variant<F32x8, 8, 1>()}, 4,
          {pairs_variant<F32x8, 4, 2>(), pairs_variant<F32x8, 8, 1>(), pairs_variant<F32x8, 2, 4>()}, 3,
          &list_neighbours};
}
SparseTile<double> sparse_tile_f64_avx2() {
  return {{rows_variant<F64x4, 3, 4>(), rows_variant<F64x4, 4, 3>(), rows_variant<F64x4, 6, 2>(),
           rows_variant<F64x4, 8, 1>()}, 4,
          {pairs_variant<F64x4, 4, 2>(), pairs_variant<F64x4, 8, 1>(), pairs_variant<F64x4, 2, 4>()}, 3,
          &list_neighbours};
}

}  // namespace cpu
}  // namespace fastperc
