#include "cpu/cpu_isa.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>
#include <vector>

#include "cpu/isa/arch.h"
#if defined(FASTPERC_ARM64)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace fastperc {
namespace cpu {
namespace {

// This architecture's ISAs, lowest first: a cap names one of them, and picks the lower of it and the
// best the CPU supports.
std::vector<Isa> architecture_isas() {
#if defined(FASTPERC_X86)
  return {Isa::generic, Isa::avx2, Isa::avx512};
#elif defined(FASTPERC_ARM64)
  return {Isa::generic, Isa::neon};
#else
  return {Isa::generic};
#endif
}

// Position in architecture_isas(), or -1 for another architecture's ISA.
int isa_rank(Isa isa) {
  const std::vector<Isa> all = architecture_isas();
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] == isa) return static_cast<int>(i);
  return -1;
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512, Isa::neon})
    if (name == isa_name(isa)) return isa;
  TORCH_CHECK(false, "fastperc: unknown CPU ISA '", name, "'; expected one of generic, avx2, avx512, neon");
}

Isa initial_isa() {
  const char* env = std::getenv("FASTPERC_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_supported_isa();
  const Isa wanted = parse_isa(env);
  // Another architecture's ISA (avx2 on aarch64) caps nothing; a higher one than the CPU has, neither.
  const int rank = isa_rank(wanted);
  return rank >= 0 && rank <= isa_rank(best_supported_isa()) ? wanted : best_supported_isa();
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

Isa best_supported_isa() {
  static const Isa best = [] {
#if defined(FASTPERC_X86)
    // libgcc's checks include the OS's XSAVE support for the wider registers.
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::generic;
#elif defined(FASTPERC_ARM64)
    // ASIMD is part of the aarch64 base profile; the kernel still says so in the HWCAP bits.
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) ? Isa::neon : Isa::generic;
#else
    return Isa::generic;
#endif
  }();
  return best;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load()); }

bool bf16_dot_supported() {
#if defined(FASTPERC_X86)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return has && active_isa() == Isa::avx512;
#else
  return false;
#endif
}

void set_active_isa(const std::string& name) {
  const Isa wanted = parse_isa(name);
  const int rank = isa_rank(wanted);
  TORCH_CHECK(rank >= 0 && rank <= isa_rank(best_supported_isa()), "fastperc: this CPU does not support ", name,
              " (supported: ", supported_isa_names(), ")");
  active_slot().store(static_cast<int>(wanted));
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::neon: return "neon";
    default: return "generic";
  }
}

std::string supported_isa_names() {
  std::string names;
  for (Isa isa : architecture_isas())
    if (isa_rank(isa) <= isa_rank(best_supported_isa())) names += std::string(names.empty() ? "" : ",") + isa_name(isa);
  return names;
}

// One tile set per ISA of this architecture; the generic one everywhere.
#if defined(FASTPERC_X86)
#define FASTPERC_PICK(stem)                   \
  switch (active_isa()) {                     \
    case Isa::avx512: return stem##_avx512(); \
    case Isa::avx2: return stem##_avx2();     \
    default: return stem##_generic();         \
  }
#elif defined(FASTPERC_ARM64)
#define FASTPERC_PICK(stem)               \
  switch (active_isa()) {                 \
    case Isa::neon: return stem##_neon(); \
    default: return stem##_generic();     \
  }
#else
#define FASTPERC_PICK(stem) return stem##_generic();
#endif

GramTile<float> gram_tile_f32() { FASTPERC_PICK(gram_tile_f32) }
GramTile<double> gram_tile_f64() { FASTPERC_PICK(gram_tile_f64) }
SparseTile<float> sparse_tile_f32() { FASTPERC_PICK(sparse_tile_f32) }
SparseTile<double> sparse_tile_f64() { FASTPERC_PICK(sparse_tile_f64) }
SsimTile<float> ssim_tile_f32() { FASTPERC_PICK(ssim_tile_f32) }
KnnTile knn_tile() { FASTPERC_PICK(knn_tile) }
SsimTile<double> ssim_tile_f64() { FASTPERC_PICK(ssim_tile_f64) }

#undef FASTPERC_PICK

}  // namespace cpu
}  // namespace fastperc
