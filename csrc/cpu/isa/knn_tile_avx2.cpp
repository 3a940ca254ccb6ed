// AVX2 knn distance tile (see knn_tile.h) on 32-byte vectors: 2 queries per call (16 ymm registers:
// 6 query broadcasts, 2 minima, 3 target vectors and temporaries).
#include <cstdint>

#include "cpu/isa/knn_tile.h"

#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_avx2.inc"
}  // namespace

#include "cpu/isa/knn_tile_body.inc"

KnnTile knn_tile_avx2() { return make_knn_tile<2>(); }

}  // namespace cpu
}  // namespace fastperc
