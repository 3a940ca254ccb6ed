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

// GCC's first scheduling pass (before register allocation, on by default for aarch64) moves loads up
// for latency and kept more values live than the 32 registers hold: the 11- and 15-tap W passes and the
// 11-tap H pass spilled to the stack in their loops (GCC 12), and llvm-mca puts those loops 2-7% slower
// with it (benchmarks/RESULTS.md). Without it they do not spill (tests/test_vector_codegen_neon.py); an
// out-of-order core does that scheduling itself.
#pragma GCC optimize("no-schedule-insns")
#include "cpu/isa/ssim_tile_body.inc"

SsimTile<float> ssim_tile_f32_neon() { return make_ssim_tile<float>(); }
SsimTile<double> ssim_tile_f64_neon() { return make_ssim_tile<double>(); }

}  // namespace cpu
}  // namespace fastperc
