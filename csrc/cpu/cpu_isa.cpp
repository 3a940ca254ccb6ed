#include "cpu/cpu_isa.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

namespace fastperc {
namespace cpu {
namespace {

Isa parse_isa(const std::string& name) {
  if (name == "generic") return Isa::generic;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  TORCH_CHECK(false, "fastperc: unknown CPU ISA '", name, "'; expected generic, avx2 or avx512");
}

Isa initial_isa() {
  const char* env = std::getenv("FASTPERC_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_supported_isa();
  const Isa wanted = parse_isa(env);
  return static_cast<int>(wanted) <= static_cast<int>(best_supported_isa()) ? wanted : best_supported_isa();
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

Isa best_supported_isa() {
  // libgcc's checks include the OS's XSAVE support for the wider registers.
  static const Isa best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::generic;
  }();
  return best;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load()); }

bool bf16_dot_supported() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return has && active_isa() == Isa::avx512;
}

void set_active_isa(const std::string& name) {
  const Isa wanted = parse_isa(name);
  TORCH_CHECK(static_cast<int>(wanted) <= static_cast<int>(best_supported_isa()), "fastperc: this CPU does not support ",
              name, " (best: ", isa_name(best_supported_isa()), ")");
  active_slot().store(static_cast<int>(wanted));
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

GramTile<float> gram_tile_f32() {
  switch (active_isa()) {
    case Isa::avx512: return gram_tile_f32_avx512();
    case Isa::avx2: return gram_tile_f32_avx2();
    default: return gram_tile_f32_generic();
  }
}

GramTile<double> gram_tile_f64() {
  switch (active_isa()) {
    case Isa::avx512: return gram_tile_f64_avx512();
    case Isa::avx2: return gram_tile_f64_avx2();
    default: return gram_tile_f64_generic();
  }
}

SparseTile<float> sparse_tile_f32() {
  switch (active_isa()) {
    case Isa::avx512: return sparse_tile_f32_avx512();
    case Isa::avx2: return sparse_tile_f32_avx2();
    default: return sparse_tile_f32_generic();
  }
}

SparseTile<double> sparse_tile_f64() {
  switch (active_isa()) {
    case Isa::avx512: return sparse_tile_f64_avx512();
    case Isa::avx2: return sparse_tile_f64_avx2();
    default: return sparse_tile_f64_generic();
  }
}

SsimTile<float> ssim_tile_f32() {
  switch (active_isa()) {
    case Isa::avx512: return ssim_tile_f32_avx512();
    case Isa::avx2: return ssim_tile_f32_avx2();
    default: return ssim_tile_f32_generic();
  }
}

SsimTile<double> ssim_tile_f64() {
  switch (active_isa()) {
    case Isa::avx512: return ssim_tile_f64_avx512();
    case Isa::avx2: return ssim_tile_f64_avx2();
    default: return ssim_tile_f64_generic();
  }
}

}  // namespace cpu
}  // namespace fastperc
