// Portable micro-kernels (baseline x86-64 / any CPU) on 16-byte vectors: 4 x 8 floats and 4 x 4 doubles
// (8 and 8 accumulators of the 16 SSE2 registers).
#include <cstdint>

#include "cpu/isa/gram_tile.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_generic.inc"
#include "cpu/isa/pack8_vec16.inc"
}  // namespace

#include "cpu/isa/gram_tile_body.inc"

GramTile<float> gram_tile_f32_generic() { return {4, 8, &gram_tile<Vec16<float>, 4, 2>, &pack8_f32}; }
GramTile<double> gram_tile_f64_generic() { return {4, 4, &gram_tile<Vec16<double>, 4, 2>, nullptr}; }

}  // namespace cpu
}  // namespace fastperc
