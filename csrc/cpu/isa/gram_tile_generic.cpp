// Portable micro-kernels (baseline x86-64 / any CPU) on 16-byte vectors: 6 x 8 floats and 6 x 4 doubles
// (12 accumulators, 2 loaded vectors of b and the two products of the 16 SSE2 registers), reading
// each a value as a whole vector of copies (a_lanes; see gram_tile.h).
#include <cstdint>

#include "cpu/isa/gram_tile.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_generic.inc"
#include "cpu/isa/pack8_vec16.inc"
}  // namespace

#include "cpu/isa/gram_tile_body.inc"

GramTile<float> gram_tile_f32_generic() {
  GramTile<float> t{6, 8, &gram_tile<Vec16<float>, 6, 2, 4>, &pack8_f32};
  t.a_lanes = 4;
  return t;
}
GramTile<double> gram_tile_f64_generic() {
  GramTile<double> t{6, 4, &gram_tile<Vec16<double>, 6, 2, 2>, nullptr};
  t.a_lanes = 2;
  return t;
}

}  // namespace cpu
}  // namespace fastperc
