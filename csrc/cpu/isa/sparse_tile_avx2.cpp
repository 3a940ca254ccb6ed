// AVX2 + FMA sparse-convolution micro-kernels (see sparse_tile.h); 16 ymm registers, so rows tiles of
// 4 x 3 and 6 x 2 vectors (12 accumulators) and 8 x 1; pair tiles 4 x 2, 8 x 1 and 2 x 4
// vectors (8 accumulators).
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

SparseTile<float> sparse_tile_f32_avx2() {
  return {{rows_variant<F32x8, 4, 3>(), rows_variant<F32x8, 6, 2>(), rows_variant<F32x8, 8, 1>()}, 3,
          {pairs_variant<F32x8, 4, 2>(), pairs_variant<F32x8, 8, 1>(), pairs_variant<F32x8, 2, 4>()}, 3};
}
SparseTile<double> sparse_tile_f64_avx2() {
  return {{rows_variant<F64x4, 4, 3>(), rows_variant<F64x4, 6, 2>(), rows_variant<F64x4, 8, 1>()}, 3,
          {pairs_variant<F64x4, 4, 2>(), pairs_variant<F64x4, 8, 1>(), pairs_variant<F64x4, 2, 4>()}, 3};
}

}  // namespace cpu
}  // namespace fastperc
