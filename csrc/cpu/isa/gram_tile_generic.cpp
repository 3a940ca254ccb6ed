// Portable micro-kernels (baseline x86-64 / any CPU): scalar code the compiler may vectorise.
#include <cstdint>

#include "cpu/isa/gram_tile.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_generic.inc"
}  // namespace

#include "cpu/isa/gram_tile_body.inc"

GramTile<float> gram_tile_f32_generic() { return {4, 8, &gram_tile<Scalar1<float>, 4, 8>, nullptr}; }
GramTile<double> gram_tile_f64_generic() { return {4, 8, &gram_tile<Scalar1<double>, 4, 8>, nullptr}; }

}  // namespace cpu
}  // namespace fastperc
