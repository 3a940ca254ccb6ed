// aarch64 ASIMD (NEON) knn distance tile (see knn_tile.h) on 16-byte vectors: 4 queries per call (32
// q registers: 12 query broadcasts, 4 minima, 3 target vectors and temporaries). Not timed on ARM
// hardware yet.
#include <cstdint>

#include "cpu/isa/knn_tile.h"

#include <arm_neon.h>

namespace fastperc {
namespace cpu {
namespace {
#include "cpu/isa/vec_neon.inc"
}  // namespace

#include "cpu/isa/knn_tile_body.inc"

KnnTile knn_tile_neon() { return make_knn_tile<4>(); }

}  // namespace cpu
}  // namespace fastperc
