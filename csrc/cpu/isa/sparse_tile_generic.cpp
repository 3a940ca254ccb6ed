// Portable sparse-convolution micro-kernels (baseline x86-64 / any CPU): scalar code the compiler may
// vectorise. One rows tile of 4 x 8 and pair tiles of 4 x 8.
#include <cstdint>

#include "cpu/isa/sparse_tile.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_generic.inc"
}  // namespace

#include "cpu/isa/sparse_tile_body.inc"

SparseTile<float> sparse_tile_f32_generic() {
  return {{rows_variant<Scalar1<float>, 4, 8>()}, 1, {pairs_variant<Scalar1<float>, 4, 8>()}, 1};
}
SparseTile<double> sparse_tile_f64_generic() {
  return {{rows_variant<Scalar1<double>, 4, 8>()}, 1, {pairs_variant<Scalar1<double>, 4, 8>()}, 1};
}

}  // namespace cpu
}  // namespace fastperc
