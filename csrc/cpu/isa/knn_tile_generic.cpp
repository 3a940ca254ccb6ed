// Portable knn distance tile (baseline x86-64 / any CPU) on 16-byte vectors: 2 queries per call (16
// registers: 6 query broadcasts, 2 minima, 3 target vectors and temporaries).
#include <cstdint>

#include "cpu/isa/knn_tile.h"

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_generic.inc"
}  // namespace

#include "cpu/isa/knn_tile_body.inc"

KnnTile knn_tile_generic() { return make_knn_tile<2>(); }

}  // namespace cpu
}  // namespace fastperc
