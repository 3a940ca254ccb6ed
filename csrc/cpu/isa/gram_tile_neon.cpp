// aarch64 ASIMD (NEON) micro-kernels: 4 x 20 floats (20 q-register accumulators of the 32) and 4 x 8
// doubles (16). mr must divide nr (tile rows are read from the column panels). A tile's loop also holds
// its nv vectors of b and its 4 a values, loaded as vectors and multiplied by lane (`fmla` by element;
// row_values.inc): 26 and 22 registers. The 4 x 12 double tile that was here needed 34, and GCC kept
// two accumulators on the stack, loaded and stored on every step (tests/test_vector_codegen_neon.py
// checks every tile's loop). Not timed on ARM hardware yet (benchmarks/neon_model.py models it).
#include <cstdint>

#include "cpu/isa/gram_tile.h"

#include <arm_neon.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_neon.inc"
#include "cpu/isa/pack8_vec16.inc"
}  // namespace

#include "cpu/isa/gram_tile_body.inc"

GramTile<float> gram_tile_f32_neon() { return {4, 20, &gram_tile<F32x4, 4, 5>, &pack8_f32}; }
GramTile<double> gram_tile_f64_neon() { return {4, 8, &gram_tile<F64x2, 4, 4>, nullptr}; }

}  // namespace cpu
}  // namespace fastperc
