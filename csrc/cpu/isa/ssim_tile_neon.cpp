// SSIM tile stages compiled for aarch64 ASIMD (NEON) with 16-byte native vectors (see ssim_tile.h).
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cpu/isa/ssim_tile.h"

#include <arm_neon.h>

#include "common/ssim_math.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_neon.inc"
}  // namespace

#include "cpu/isa/ssim_tile_body.inc"

SsimTile<float> ssim_tile_f32_neon() { return make_ssim_tile<float>(); }
SsimTile<double> ssim_tile_f64_neon() { return make_ssim_tile<double>(); }

}  // namespace cpu
}  // namespace fastperc
