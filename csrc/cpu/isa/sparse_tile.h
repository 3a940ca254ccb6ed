#pragma once
// Register-blocked micro-kernels of the CPU sparse convolution, reading gathered rows in place.
//
// The sparse convolution multiplies rows picked by a kernel map. Packing them into panels first (as a
// dense GEMM does) cost as much time as the multiplications, so these kernels take one pointer per row
// instead and read the rows where they are: the rows a tile reads stay in L1/L2 while it runs.
//
// Each ISA translation unit (sparse_tile_<isa>.cpp) has internal linkage only, like gram_tile.h's;
// cpu/cpu_isa.cpp picks one at run time.
#include <cstdint>

#include "cpu/isa/arch.h"

namespace fastperc {
namespace cpu {

template <typename T>
struct SparseTile {
  // Forward and input gradient: for r < mr, j < nr:
  //   c[r][c_off + j] += sum_{k < kc} a[r][k] * b[k * ldb + j]   (the sum formed first, then added).
  // a: mr rows of kc features (gathered inputs); b: a weight panel padded to whole tiles of nr columns;
  // c: mr distinct output rows, each with room for c_off + nr values.
  struct Rows {
    int mr;
    int nr;
    void (*tile)(int64_t kc, const T* const* a, const T* b, int64_t ldb, T* const* c, int64_t c_off);
  };
  // Variants by column width, widest first; the driver picks the one that pads the output least.
  Rows rows[4];
  int n_rows;

  // Weight gradient over np pairs p (x row a[p], gradient row b[p]): for r < mr, j < nr:
  //   c[r * ldc + j] += sum_{p < np} a[p][a_off + r] * b[p][b_off + j]   (likewise).
  // Every a[p] must have a_off + mr values and every b[p] b_off + nr.
  struct Pairs {
    int mr;
    int nr;
    void (*tile)(int64_t np, const T* const* a, int64_t a_off, const T* const* b, int64_t b_off, T* c, int64_t ldc);
  };
  // Variants by shape, preferred first; the driver picks the one that pads dW (cin x cout) least.
  Pairs pairs[3];
  int n_pairs;

  // Lists the neighbours among n kernel-map entries: writes the entries that are rows (>= 0) to row
  // and their positions to pos, in order, and returns how many. row and pos need room for n + 16
  // values (whole vectors are stored). Returns -1 - j instead when entry j, the first such, is
  // neither -1 nor a row (< n_rows). A sparse map is mostly -1 (87% on the 5 cm LiDAR scan): listed
  // one entry at a time, this pass over every entry was a tenth of that forward (RESULTS.md).
  int64_t (*list)(const int32_t* entries, int64_t n, int64_t n_rows, int32_t* row, int32_t* pos);
};

#if defined(FASTPERC_X86)
SparseTile<float> sparse_tile_f32_avx512();
SparseTile<double> sparse_tile_f64_avx512();
SparseTile<float> sparse_tile_f32_avx2();
SparseTile<double> sparse_tile_f64_avx2();
#elif defined(FASTPERC_ARM64)
SparseTile<float> sparse_tile_f32_neon();
SparseTile<double> sparse_tile_f64_neon();
#endif
SparseTile<float> sparse_tile_f32_generic();
SparseTile<double> sparse_tile_f64_generic();

}  // namespace cpu
}  // namespace fastperc
