#pragma once
// Per-element Gram math shared by the CPU and CUDA kernels.
#include <cstdint>

#include "common/config.h"

namespace fastperc {

// Both kernels compute only the upper triangle (row <= col) of the symmetric Gram matrix, split over
// K into partial sums laid out [split][row][ld]. Element (i, j) of the result is read from its
// upper-triangle mirror and its partials are added in a fixed order, so the result does not depend
// on the number of threads or blocks that produced them.
template <typename acc_t>
FP_HD acc_t gram_reduce_element(const acc_t* partial, int64_t splits, int64_t split_stride, int64_t ld,
                                int64_t i, int64_t j, acc_t scale) {
  const int64_t row = i < j ? i : j;
  const int64_t col = i < j ? j : i;
  const acc_t* p = partial + row * ld + col;
  acc_t sum = 0;
  for (int64_t s = 0; s < splits; ++s) sum += p[s * split_stride];
  return sum * scale;
}

// Maps t in [0, n(n+1)/2) to the t-th tile (row <= col) of an n x n tile grid, row-major.
FP_HD void upper_tile_from_index(int64_t t, int64_t n, int64_t& row, int64_t& col) {
  row = 0;
  int64_t row_len = n;
  while (t >= row_len) {
    t -= row_len;
    --row_len;
    ++row;
  }
  col = row + t;
}

}  // namespace fastperc
