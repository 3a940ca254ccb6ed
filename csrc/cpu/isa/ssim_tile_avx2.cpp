// SSIM tile stages compiled for AVX2 + FMA (see ssim_tile.h).
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cpu/isa/ssim_tile.h"

#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include "common/ssim_math.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_avx2.inc"
}  // namespace

#include "cpu/isa/ssim_tile_body.inc"

SsimTile<float> ssim_tile_f32_avx2() { return make_ssim_tile<float>(); }
SsimTile<double> ssim_tile_f64_avx2() { return make_ssim_tile<double>(); }

}  // namespace cpu
}  // namespace fastperc
