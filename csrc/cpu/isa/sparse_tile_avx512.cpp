// AVX-512F sparse-convolution micro-kernels (see sparse_tile.h). Rows tiles: 6 x 4, 12 x 2 and 8 x 1
// vectors (24, 24 and 8 zmm accumulators); pair tiles 8 x 2, 16 x 1 and 4 x 4
// vectors (16 accumulators each).
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

SparseTile<float> sparse_tile_f32_avx512() {
  return {{rows_variant<F32x16, 6, 4>(), rows_variant<F32x16, 12, 2>(), rows_variant<F32x16, 8, 1>()}, 3,
          {pairs_variant<F32x16, 8, 2>(), pairs_variant<F32x16, 16, 1>(), pairs_variant<F32x16, 4, 4>()}, 3};
}
SparseTile<double> sparse_tile_f64_avx512() {
  return {{rows_variant<F64x8, 6, 4>(), rows_variant<F64x8, 12, 2>(), rows_variant<F64x8, 8, 1>()}, 3,
          {pairs_variant<F64x8, 8, 2>(), pairs_variant<F64x8, 16, 1>(), pairs_variant<F64x8, 4, 4>()}, 3};
}

}  // namespace cpu
}  // namespace fastperc
