// AVX-512F micro-kernels: 8 x 32 floats and 8 x 16 doubles (16 zmm accumulators each); the Gram
// forward takes 16 x 16 floats up to C = 128 (fewer outputs past the diagonal, see gram_tile.h).
#include <cstdint>

#include "cpu/isa/gram_tile.h"

#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_avx512.inc"
}  // namespace

#include "cpu/isa/gram_tile_body.inc"
#include "cpu/isa/pack8_avx2.inc"

GramTile<float> gram_tile_f32_avx512() {
  return {8, 32, &gram_tile<F32x16, 8, 2>, &pack8_f32, 16, 16, &gram_tile<F32x16, 16, 1>, 16, 128};
}
GramTile<double> gram_tile_f64_avx512() { return {8, 16, &gram_tile<F64x8, 8, 2>, nullptr}; }

}  // namespace cpu
}  // namespace fastperc
