#pragma once
// Register-blocked micro-kernels of the CPU Gram and the panel packing they read.
//
// x rows are packed k-major into panels of NR rows: panel[k * NR + r]. A tile C[MR x NR] +=
// A^T B reads its B operand from one panel and its A operand (MR rows, MR divides NR) from the same
// packed buffer with stride lda = NR, so each chunk of x is packed once for both operands.
//
// Each ISA translation unit (gram_tile_<isa>.cpp) is compiled for its own instruction set with a
// `#pragma GCC target` and shares no inline function with other translation units (its code has
// internal linkage), so no AVX-512 instruction can reach a machine without it through the linker.
// The driver (cpu/gram_kernel.cpp) picks one at run time (cpu/cpu_isa.cpp).
#include <cstdint>

#include "cpu/isa/arch.h"

namespace fastperc {
namespace cpu {

template <typename T>
struct GramTile {
  int mr;
  int nr;
  // c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0) + sum_k a[(k * lda + r) * a_lanes] * b[k * ldb + j]
  // for r < mr, j < nr. The Gram reads b from a packed panel (ldb = nr); its backward straight from x.
  void (*tile)(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate);
  // dst[k * ld_dst + r] = src[r * ld_src + k] for r < 8, k < depth: 8 contiguous rows, transposed.
  // Null where the ISA has no faster way than the driver's scalar loop.
  void (*pack8)(const T* src, int64_t ld_src, int64_t depth, T* dst, int64_t ld_dst);
  // The Gram forward's own tile where the ISA has a better one for an upper triangle (null: `tile`):
  // a narrower tile computes fewer outputs below the diagonal and past C (avx2 at C = 128: 9216
  // outputs with 4 x 16 against 11712 with 4 x 24, for 8256 wanted), while the backward's plain
  // product keeps the wider tile, which needs fewer loads per FMA.
  int triangle_mr = 0;
  int triangle_nr = 0;
  void (*triangle_tile)(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc,
                        bool accumulate) = nullptr;
  // KiB of one packed panel for the triangle tile (the others take 16, half of L1). A tile reads its
  // rows from a whole panel too, so two panels share L1: avx2's 4 x 16 tile, with 8 accumulators
  // and little latency slack, ran 5-13% faster at C >= 128 on a Zen 4 with 8 KiB panels (RESULTS.md).
  int triangle_panel_kib = 16;
  // The largest C the triangle tile is used for (0: any). avx512's 16 x 16 tile computes 17% fewer
  // outputs than its 8 x 32 one at C = 64 and 10% at 128, but needs 17 loads per 16 FMAs against 10:
  // a cost where a core runs two 512-bit FMAs a cycle (Intel), none on a Zen 4 (RESULTS.md).
  int triangle_max_c = 0;
  // Copies of each value `tile` broadcasts (a) that its drivers store side by side: 1, or the vector
  // width where the tile loads a whole vector instead of broadcasting a scalar. SSE2 has no broadcast
  // load; its shuffle broadcast takes an FP pipe from the multiplies and adds, and a 6 x 8 generic tile
  // ran 1.22x faster from pre-broadcast values than the 4 x 8 one with shuffles (Zen 5, RESULTS.md).
  // The forward then packs its tile rows apart from its panels, so mr need not divide nr there.
  int a_lanes = 1;
};

// bfloat16 pairs (AVX512-BF16): c[r * ldc + j] (+)= sum_p dot2(a[p * lda + r], b[p * ldb + j]), each
// uint32 two bfloat16 values of consecutive columns; products exact in float32, float32 sums.
struct GramTileBf16 {
  int mr;
  int nr;
  void (*tile)(int64_t pairs, const uint32_t* a, int64_t lda, const uint32_t* b, int64_t ldb, float* c, int64_t ldc,
               bool accumulate);
};

#if defined(FASTPERC_X86)
GramTileBf16 gram_tile_bf16_avx512();  // only where bf16_dot_supported()
GramTile<float> gram_tile_f32_avx512();
GramTile<double> gram_tile_f64_avx512();
GramTile<float> gram_tile_f32_avx2();
GramTile<double> gram_tile_f64_avx2();
#elif defined(FASTPERC_ARM64)
GramTile<float> gram_tile_f32_neon();
GramTile<double> gram_tile_f64_neon();
#endif
GramTile<float> gram_tile_f32_generic();
GramTile<double> gram_tile_f64_generic();

}  // namespace cpu
}  // namespace fastperc
