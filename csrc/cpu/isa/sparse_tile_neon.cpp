// aarch64 ASIMD (NEON) sparse-convolution micro-kernels (see sparse_tile.h); 32 q registers, so rows
// tiles of 4 x 6, 6 x 4 and 8 x 2 vectors (24, 24 and 16 accumulators) and pair tiles 4 x 4, 8 x 2 and
// 2 x 8 vectors (16 each). Not timed on ARM hardware yet.
#include <cstdint>

#include "cpu/isa/sparse_tile.h"

#include <arm_neon.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_neon.inc"
}  // namespace

#include "cpu/isa/sparse_tile_body.inc"

SparseTile<float> sparse_tile_f32_neon() {
  return {{rows_variant<F32x4, 4, 6>(), rows_variant<F32x4, 6, 4>(), rows_variant<F32x4, 8, 2>()}, 3,
          {pairs_variant<F32x4, 4, 4>(), pairs_variant<F32x4, 8, 2>(), pairs_variant<F32x4, 2, 8>()}, 3,
          &list_neighbours_scalar};
}
SparseTile<double> sparse_tile_f64_neon() {
  return {{rows_variant<F64x2, 4, 6>(), rows_variant<F64x2, 6, 4>(), rows_variant<F64x2, 8, 2>()}, 3,
          {pairs_variant<F64x2, 4, 4>(), pairs_variant<F64x2, 8, 2>(), pairs_variant<F64x2, 2, 8>()}, 3,
          &list_neighbours_scalar};
}

}  // namespace cpu
}  // namespace fastperc
