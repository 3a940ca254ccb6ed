// AVX2 + FMA micro-kernels: 4 x 24 floats and 4 x 12 doubles (12 ymm accumulators each); the float Gram
// forward uses 4 x 16 (8 accumulators), which wastes fewer outputs on the triangle (see gram_tile.h).
#include <cstdint>

#include "cpu/isa/gram_tile.h"

#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_avx2.inc"
}  // namespace

#include "cpu/isa/gram_tile_body.inc"
#include "cpu/isa/pack8_avx2.inc"

GramTile<float> gram_tile_f32_avx2() {
  return {4, 24, &gram_tile<F32x8, 4, 3>, &pack8_f32, 4, 16, &gram_tile<F32x8, 4, 2>, 8};
}
GramTile<double> gram_tile_f64_avx2() { return {4, 12, &gram_tile<F64x4, 4, 3>, nullptr}; }

}  // namespace cpu
}  // namespace fastperc
