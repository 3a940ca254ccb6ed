#pragma once
// Per-site index math of sparse convolution, compiled for host and device: the CPU kernels call the
// same helpers the CUDA kernels run, so the CPU tests exercise them.
#include <cstdint>

#include "common/config.h"

namespace fastperc {

// Sites are (batch, x, y, z) with batch in [0, 32767] and x, y, z in [0, 65535], packed into one
// int64 key, 16 bits each. The batch limit keeps every key non-negative: keys order like the sites
// (lexicographically), and -1 is free to mark an empty hash slot.
constexpr int64_t kSparseKeyLimit = int64_t{1} << 16;
constexpr int64_t kSparseBatchLimit = int64_t{1} << 15;
constexpr int kSparseKeyBits = 16;

FP_HD int64_t sparse_key(int64_t b, int64_t x, int64_t y, int64_t z) {
  return (((b << kSparseKeyBits) | x) << kSparseKeyBits | y) << kSparseKeyBits | z;
}

// Component d (0 = batch, 1..3 = x, y, z) of a key.
FP_HD int32_t sparse_key_part(int64_t key, int d) {
  return static_cast<int32_t>((key >> (kSparseKeyBits * (3 - d))) & (kSparseKeyLimit - 1));
}

FP_HD bool in_key_range(int64_t v) { return v >= 0 && v < kSparseKeyLimit; }

FP_HD bool site_in_key_space(int64_t b, int64_t x, int64_t y, int64_t z) {
  return b >= 0 && b < kSparseBatchLimit && in_key_range(x) && in_key_range(y) && in_key_range(z);
}

// Slot of a key in an open-addressing table of mask + 1 (a power of two) slots: Fibonacci hashing,
// whose high bits mix all the key's fields.
FP_HD int64_t sparse_slot(int64_t key, int64_t mask) {
  const uint64_t h = static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ull;
  return static_cast<int64_t>(h >> 20) & mask;
}

// Along one axis: the input coordinate that output o reads through kernel tap k (stride s, padding
// p, dilation d), or false when there is none (a transposed convolution between strides).
//   direct:     i = o * s - p + k * d
//   transposed: o = i * s - p + k * d
FP_HD bool source_of(int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, bool transposed, int64_t& i) {
  if (!transposed) {
    i = o * s - p + k * d;
    return true;
  }
  const int64_t num = o + p - k * d;
  if (num % s != 0) return false;
  i = num / s;
  return true;
}

// The converse: the output coordinate that input i reaches through tap k, or false.
FP_HD bool target_of(int64_t i, int64_t k, int64_t s, int64_t p, int64_t d, bool transposed, int64_t& o) {
  if (transposed) {
    o = i * s - p + k * d;
    return true;
  }
  const int64_t num = i + p - k * d;
  if (num % s != 0) return false;
  o = num / s;
  return true;
}

// The input row read by output site (b, o[3]) through offset k = (kx * Ky + ky) * Kz + kz, looked up
// with find(key) -> row or -1. -1 when the source lies off the key space or is no site.
template <typename Find>
FP_HD int64_t map_entry(int32_t b, const int32_t* o, int64_t k, const int64_t* ks, const int64_t* st, const int64_t* pd,
                        const int64_t* dl, bool transposed, const Find& find) {
  const int64_t tap[3] = {k / (ks[1] * ks[2]), (k / ks[2]) % ks[1], k % ks[2]};
  int64_t src[3];
  for (int a = 0; a < 3; ++a)
    if (!source_of(o[a], tap[a], st[a], pd[a], dl[a], transposed, src[a]) || !in_key_range(src[a])) return -1;
  return find(sparse_key(b, src[0], src[1], src[2]));
}

// other lists the pair (i, j) at offset k: other[k, i] == j (i a row of other's).
FP_HD bool other_lists_pair(const int32_t* other, int64_t n_other, int64_t k, int64_t i, int64_t j) {
  return other[k * n_other + i] == j;
}

// kmap (K, n_out) and inv (K, n_in) are inverse maps when every pair one lists, the other lists too:
// inv[k, kmap[k, j]] == j wherever kmap[k, j] >= 0, and the same with the roles swapped. Checked one
// entry at a time (entries already known to be -1 or in range), in both directions.
FP_HD bool inverse_pair_ok(const int32_t* map, int64_t n_map, const int32_t* other, int64_t n_other, int64_t k,
                           int64_t j) {
  const int64_t i = map[k * n_map + j];
  return i < 0 || other_lists_pair(other, n_other, k, i, j);
}

// Output grid extent along one axis for an input grid of n.
FP_HD int64_t conv_output_extent(int64_t n, int64_t k, int64_t s, int64_t p, int64_t d, bool transposed) {
  if (transposed) return (n - 1) * s - 2 * p + d * (k - 1) + 1;
  const int64_t num = n + 2 * p - d * (k - 1) - 1;
  return (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
}

}  // namespace fastperc
