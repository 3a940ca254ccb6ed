#pragma once
// Run-time choice of the CPU micro-kernels: the best ISA this CPU supports, or a lower one asked for
// (FASTPERC_CPU_ISA=generic|avx2|avx512, or fastperc._C.set_cpu_isa) to test and compare them.
#include <string>
#include <type_traits>

#include "cpu/isa/gram_tile.h"
#include "cpu/isa/knn_tile.h"
#include "cpu/isa/sparse_tile.h"
#include "cpu/isa/ssim_tile.h"

namespace fastperc {
namespace cpu {

// generic: portable C++ for any CPU. x86-64: avx2 (with FMA), avx512 (F, VL, DQ, BW). aarch64: neon
// (ASIMD, 128-bit, with FMA). Each architecture orders its own: generic < avx2 < avx512, generic < neon.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2, neon = 3 };

Isa best_supported_isa();
Isa active_isa();
void set_active_isa(const std::string& name);  // throws for an unknown or unsupported ISA
const char* isa_name(Isa isa);
// The ISAs this build can run on this CPU, lowest first (what `FASTPERC_CPU_ISA` may name).
std::string supported_isa_names();
// AVX512-BF16 dot products are there and the active ISA is avx512 (a lower cap turns them off too).
bool bf16_dot_supported();

GramTile<float> gram_tile_f32();
GramTile<double> gram_tile_f64();

SparseTile<float> sparse_tile_f32();
SparseTile<double> sparse_tile_f64();

KnnTile knn_tile();

SsimTile<float> ssim_tile_f32();
SsimTile<double> ssim_tile_f64();

template <typename T>
SsimTile<T> active_ssim_tile() {
  if constexpr (std::is_same_v<T, double>) {
    return ssim_tile_f64();
  } else {
    return ssim_tile_f32();
  }
}

template <typename T>
SparseTile<T> active_sparse_tile() {
  if constexpr (std::is_same_v<T, double>) {
    return sparse_tile_f64();
  } else {
    return sparse_tile_f32();
  }
}

template <typename T>
GramTile<T> active_gram_tile() {
  if constexpr (std::is_same_v<T, double>) {
    return gram_tile_f64();
  } else {
    return gram_tile_f32();
  }
}

}  // namespace cpu
}  // namespace fastperc
