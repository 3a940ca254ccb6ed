// Portable sparse-convolution micro-kernels (baseline x86-64 / any CPU) on 16-byte vectors, shaped for
// 16 registers like the avx2 ones: rows tiles of 3 x 4, 4 x 3, 6 x 2 and 8 x 1 vectors, pair tiles
// 4 x 2, 8 x 1 and 2 x 4 vectors.
#include <cstdint>

#include "cpu/isa/sparse_tile.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_generic.inc"
}  // namespace

#include "cpu/isa/sparse_tile_body.inc"

template <typename T>
SparseTile<T> generic_tiles() {
  using V = Vec16<T>;
  return {{rows_variant<V, 3, 4>(), rows_variant<V, 4, 3>(), rows_variant<V, 6, 2>(), rows_variant<V, 8, 1>()}, 4,
          {pairs_variant<V, 4, 2>(), pairs_variant<V, 8, 1>(), pairs_variant<V, 2, 4>()}, 3,
          &list_neighbours_scalar};
}

SparseTile<float> sparse_tile_f32_generic() { return generic_tiles<float>(); }
SparseTile<double> sparse_tile_f64_generic() { return generic_tiles<double>(); }

}  // namespace cpu
}  // namespace fastperc
