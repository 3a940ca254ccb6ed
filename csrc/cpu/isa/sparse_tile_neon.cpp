// aarch64 ASIMD (NEON) sparse-convolution micro-kernels (see sparse_tile.h): rows tiles of 5 x 4, 3 x 6
// and 8 x 2 vectors, pair tiles of 4 x 4, 8 x 2 and 2 x 8. A tile's loop holds mr x nv accumulators,
// nv loaded vectors of b and, unlike x86 (whose FMAs broadcast a straight from memory), registers for
// the a values it multiplies by (`fmla` by element): one per value in the rows tiles, whose values sit
// in different rows, and one per 4 floats or 2 doubles in the pairs tiles (row_values.inc). At most 29
// of the 32 q registers here. The 4 x 6 and 6 x 4 rows tiles that were here need 34, and GCC kept two
// accumulators on the stack, loaded and stored on every step (tests/test_vector_codegen_neon.py checks
// every tile's loop). Not timed on ARM hardware yet (benchmarks/neon_model.py models it).
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
  return {{rows_variant<F32x4, 5, 4>(), rows_variant<F32x4, 3, 6>(), rows_variant<F32x4, 8, 2>()}, 3,
          {pairs_variant<F32x4, 4, 4>(), pairs_variant<F32x4, 8, 2>(), pairs_variant<F32x4, 2, 8>()}, 3,
          &list_neighbours_scalar};
}
SparseTile<double> sparse_tile_f64_neon() {
  return {{rows_variant<F64x2, 5, 4>(), rows_variant<F64x2, 3, 6>(), rows_variant<F64x2, 8, 2>()}, 3,
          {pairs_variant<F64x2, 4, 4>(), pairs_variant<F64x2, 8, 2>(), pairs_variant<F64x2, 2, 8>()}, 3,
          &list_neighbours_scalar};
}

}  // namespace cpu
}  // namespace fastperc
