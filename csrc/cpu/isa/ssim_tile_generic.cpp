// SSIM tile stages compiled for baseline x86-64 (or any CPU) (see ssim_tile.h).
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cpu/isa/ssim_tile.h"

#include "common/ssim_math.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_generic.inc"
}  // namespace

#include "cpu/isa/ssim_tile_body.inc"

SsimTile<float> ssim_tile_f32_generic() { return make_ssim_tile<float>(); }
SsimTile<double> ssim_tile_f64_generic() { return make_ssim_tile<double>(); }

}  // namespace cpu
}  // namespace fastperc
