#pragma once
// Register-tiled brute-force distances of the CPU nearest-neighbour kernel (cpu/knn_kernel.cpp) for
// D = 3: a few queries against a chunk of targets held as x, y, z columns, each target's coordinates
// loaded once for all the tile's queries, in vectors of the ISA's native width. Per query it also
// returns the chunk's smallest distance, so the caller scans a chunk only where it can beat the k-th
// best (after the first chunks, almost never).
//
// The sums follow common/knn_math.h: dx^2, then dy^2 + that, then dz^2 + that, each operation rounded
// (setup.py compiles with -ffp-contract=off, so no FMA): the same float64 values as the reference and
// the CUDA kernel, bit for bit.
//
// Each ISA translation unit (knn_tile_<isa>.cpp) has internal linkage only, like gram_tile.h's;
// cpu/cpu_isa.cpp picks one at run time.
#include <cstdint>

#include "cpu/isa/arch.h"

namespace fastperc {
namespace cpu {

constexpr int kKnnTileMaxQueries = 4;

struct KnnTile {
  // Queries per call (at most kKnnTileMaxQueries): as many as the ISA's registers hold with their
  // running minima.
  int queries;
  // q: `queries` x 3 coordinates; x, y, z: len target coordinates each; dist: `queries` rows of ld
  // (>= len) values; min: `queries` values.
  void (*distances_3d)(const double* q, const double* x, const double* y, const double* z, int64_t len, double* dist,
                       int64_t ld, double* min);
};

#if defined(FASTPERC_X86)
KnnTile knn_tile_avx512();
KnnTile knn_tile_avx2();
#elif defined(FASTPERC_ARM64)
KnnTile knn_tile_neon();
#endif
KnnTile knn_tile_generic();

}  // namespace cpu
}  // namespace fastperc
