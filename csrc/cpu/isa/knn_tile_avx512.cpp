// AVX-512 knn distance tile (see knn_tile.h) on 64-byte vectors: 4 queries per call (32 zmm registers:
// 12 query broadcasts, 4 minima, 3 target vectors and temporaries).
#include <cstdint>

#include "cpu/isa/knn_tile.h"

#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#include <immintrin.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_avx512.inc"
}  // namespace

#include "cpu/isa/knn_tile_body.inc"

KnnTile knn_tile_avx512() { return make_knn_tile<4>(); }

}  // namespace cpu
}  // namespace fastperc
