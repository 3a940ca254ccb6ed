// CPU K nearest neighbours of batched, ragged point clouds, exact (the per-pair math and the tie rule:
// common/knn_math.h), and the backward of their squared distances.
//
// Two searches, picked per batch item, giving the same answer:
// - Brute force for small problems (queries x targets <= kBruteForcePairs) and for D != 3: targets as
//   float64 columns, distances to a chunk of kChunk targets, then a scan of the chunk against the
//   current k-th distance (rarely beaten once the list has filled). For D = 3 the distances come from
//   the per-ISA register tile (cpu/isa/knn_tile.h: several queries per pass over the chunk, and each
//   query's chunk minimum, so most chunks are never scanned); other D from a loop over dimensions.
// - A uniform grid for large 3D clouds: targets sorted by cell (stable, so a cell lists its points in
//   index order), cells found through an open-addressing table. A query visits the cells ring by ring
//   (Chebyshev shells around its own cell, clipped to the grid) and stops once the k-th best distance
//   is below the distance to the nearest unvisited cell. The cell size is twice the median spacing of
//   a sample of targets (times cbrt(k)), so a cell holds a few points on surfaces and volumes alike.
//   A query far from every target (another shape's points, outliers) would visit many empty cells: it
//   gives up after kShellBudget cells and is searched again on a grid 4x coarser, built only when
//   some query needs it, and so on up to one cell per axis; brute force after that. Memory: O(N + M)
//   per batch item, never N x M.
//
// Backward: grad_x[i] = sum_k 2 g_ik (x_i - y_idx), grad_y[j] = -(the same terms over the pairs with
// idx = j), summed over those pairs in ascending (i, k) order through a counting sort: deterministic
// and independent of the thread count, no atomics.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "common/knn_checks.h"
#include "cpu/cpu_isa.h"
#include "kernels.h"

namespace fastperc {
namespace cpu {
namespace {

constexpr int64_t kBruteForcePairs = int64_t{1} << 22;
constexpr int64_t kChunk = 256;
constexpr int64_t kSpacingSample = 64;     // targets whose nearest-neighbour spacing sizes the grid cell
constexpr int64_t kMaxCellsPerAxis = int64_t{1} << 20;  // cell ids fit 60 bits
constexpr int64_t kShellBudget = 343;  // cells a query may visit on one grid level: shells 0..3 in full
constexpr double kLevelGrowth = 4.0;   // cell size ratio between successive grid levels
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();

// One batch item's points as float64, point-major (n x D), read through the tensor's own strides.
template <typename T>
std::vector<double> points_of(const at::Tensor& cloud, int64_t b, int64_t n) {
  const int64_t D = cloud.size(2), s1 = cloud.stride(1), s2 = cloud.stride(2);
  const T* base = cloud.const_data_ptr<T>() + b * cloud.stride(0);
  std::vector<double> out(static_cast<size_t>(n * D));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < D; ++d) out[i * D + d] = static_cast<double>(base[i * s1 + d * s2]);
  return out;
}

struct Best {
  double d[kKnnMaxK];
  int64_t i[kKnnMaxK];
  Best() = default;
  explicit Best(int k) {
    std::fill(d, d + k, kInf);
    std::fill(i, i + k, kKnnNoIndex);
  }
};

// Targets as D columns of float64: the brute-force distance loop vectorises over targets.
struct Columns {
  int64_t n = 0;
  int D = 0;
  std::vector<double> c;  // D x n
  Columns(const std::vector<double>& pts, int64_t n_, int D_) : n(n_), D(D_), c(static_cast<size_t>(n_ * D_)) {
    for (int64_t j = 0; j < n; ++j)
      for (int d = 0; d < D; ++d) c[d * n + j] = pts[j * D + d];
  }
};

// Squared distances of q to targets [j0, j0 + len) of the columns, added in dimension order as
// knn_sq_dist does (the same float64 values on every device).
void chunk_distances(const double* q, const Columns& t, int64_t j0, int64_t len, double* out) {
  const double* col = t.c.data() + j0;
  for (int64_t j = 0; j < len; ++j) {
    const double diff = q[0] - col[j];
    out[j] = knn_square_add(diff, 0.0);
  }
  for (int d = 1; d < t.D; ++d) {
    col = t.c.data() + d * t.n + j0;
    for (int64_t j = 0; j < len; ++j) {
      const double diff = q[d] - col[j];
      out[j] = knn_square_add(diff, out[j]);
    }
  }
}

// Brute force for `count` queries (D = 3) through the register tile, `tile.queries` at a time.
void brute_force_3d(const KnnTile& tile, const double* const* q, int64_t count, const Columns& t, int k, Best* best) {
  double dist[kKnnTileMaxQueries * kChunk], low[kKnnTileMaxQueries], packed[3 * kKnnTileMaxQueries];
  const double* cx = t.c.data();
  for (int64_t first = 0; first < count; first += tile.queries) {
    const int64_t group = std::min<int64_t>(tile.queries, count - first);
    for (int a = 0; a < tile.queries; ++a)  // a short last group repeats its first query
      for (int d = 0; d < 3; ++d) packed[3 * a + d] = q[first + (a < group ? a : 0)][d];
    for (int64_t j0 = 0; j0 < t.n; j0 += kChunk) {
      const int64_t len = std::min(kChunk, t.n - j0);
      tile.distances_3d(packed, cx + j0, cx + t.n + j0, cx + 2 * t.n + j0, len, dist, kChunk, low);
      for (int64_t a = 0; a < group; ++a) {
        Best& b = best[first + a];
        if (!(low[a] <= b.d[k - 1])) continue;
        for (int64_t j = 0; j < len; ++j)
          if (dist[a * kChunk + j] <= b.d[k - 1]) knn_insert(dist[a * kChunk + j], j0 + j, b.d, b.i, k);
      }
    }
  }
}

void brute_force(const double* q, const Columns& t, int k, Best& best) {
  double dist[kChunk];
  for (int64_t j0 = 0; j0 < t.n; j0 += kChunk) {
    const int64_t len = std::min(kChunk, t.n - j0);
    chunk_distances(q, t, j0, len, dist);
    for (int64_t j = 0; j < len; ++j)
      if (dist[j] <= best.d[k - 1]) knn_insert(dist[j], j0 + j, best.d, best.i, k);
  }
}

// The bounding box of n points (n x 3).
struct Box {
  double lo[3], hi[3];
  Box(const std::vector<double>& pts, int64_t n) {
    for (int a = 0; a < 3; ++a) {
      lo[a] = kInf;
      hi[a] = -kInf;
    }
    for (int64_t j = 0; j < n; ++j)
      for (int a = 0; a < 3; ++a) {
        lo[a] = std::min(lo[a], pts[j * 3 + a]);
        hi[a] = std::max(hi[a], pts[j * 3 + a]);
      }
  }
  double extent() const { return std::max({hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]}); }
};

// Twice the median nearest-neighbour spacing of a sample of targets (brute force against all), grown
// with k so that the first shells hold k points; within what the cell ids can address.
double finest_cell_size(const std::vector<double>& pts, const Columns& columns, int64_t n, double extent, int k) {
  const double smallest = std::max(extent / static_cast<double>(kMaxCellsPerAxis - 2), 1e-300);
  if (!(extent > 0)) return 1.0;  // every target at one place: one cell
  const int64_t samples = std::min(kSpacingSample, n);
  std::vector<double> spacing;
  double dist[kChunk];
  for (int64_t s = 0; s < samples; ++s) {
    const int64_t i = s * n / samples;
    double nearest = kInf;  // to the nearest target at another place
    for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
      const int64_t len = std::min(kChunk, n - j0);
      chunk_distances(&pts[i * 3], columns, j0, len, dist);
      for (int64_t j = 0; j < len; ++j) nearest = dist[j] > 0 && dist[j] < nearest ? dist[j] : nearest;
    }
    if (nearest < kInf) spacing.push_back(std::sqrt(nearest));
  }
  if (spacing.empty()) return std::max(extent, smallest);
  std::nth_element(spacing.begin(), spacing.begin() + spacing.size() / 2, spacing.end());
  return std::max(2.0 * spacing[spacing.size() / 2] * std::cbrt(static_cast<double>(k)), smallest);
}

// The uniform grid of one batch item's 3D targets.
class Grid {
 public:
  // The grid of cell size h over the n targets pts (n x 3) with bounding box lo .. hi.
  Grid(const std::vector<double>& pts, int64_t n, const Box& box, double h) : h_(h), inv_h_(1.0 / h) {
    double magnitude = 0.0;
    for (int a = 0; a < 3; ++a) {
      lo_[a] = box.lo[a];
      magnitude = std::max({magnitude, std::abs(box.lo[a]), std::abs(box.hi[a])});
    }
    const double* hi = box.hi;
    const double extent = box.extent();
    for (int a = 0; a < 3; ++a) cells_[a] = std::min(kMaxCellsPerAxis, cell_coord(hi[a], a) + 1);
    // Cell boundaries are computed, not exact: a point may sit in the cell next to the one its true
    // coordinate lies in by a few ulps of the coordinates. The stopping bound gives that much away.
    tolerance_ = 16 * kEps * (magnitude + extent + h_);

    // Targets sorted by cell, stable: each cell lists its points in ascending index.
    std::vector<int64_t> cell(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) cell[j] = cell_id(&pts[j * 3]);
    order_.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) order_[j] = j;
    std::stable_sort(order_.begin(), order_.end(), [&](int64_t a, int64_t b) { return cell[a] < cell[b]; });
    for (int a = 0; a < 3; ++a) sorted_[a].resize(static_cast<size_t>(n));
    for (int64_t s = 0; s < n; ++s)
      for (int a = 0; a < 3; ++a) sorted_[a][s] = pts[order_[s] * 3 + a];

    int64_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    mask_ = capacity - 1;
    slot_cell_.assign(static_cast<size_t>(capacity), -1);
    slot_begin_.assign(static_cast<size_t>(capacity), 0);
    slot_end_.assign(static_cast<size_t>(capacity), 0);
    for (int64_t s = 0; s < n;) {
      const int64_t id = cell[order_[s]];
      int64_t e = s + 1;
      while (e < n && cell[order_[e]] == id) ++e;
      int64_t slot = hash(id);
      while (slot_cell_[slot] != -1) slot = (slot + 1) & mask_;
      slot_cell_[slot] = id;
      slot_begin_[slot] = s;
      slot_end_[slot] = e;
      s = e;
    }
  }

  // The k nearest targets of q (exact); false when that takes more than kShellBudget cells (best is
  // then partial: the caller starts over on a coarser grid).
  bool search(const double* q, int k, Best& best) const {
    int64_t c[3];
    for (int a = 0; a < 3; ++a) c[a] = cell_coord(q[a], a);
    int64_t r = 0;  // the first shell that meets the grid
    for (int a = 0; a < 3; ++a) r = std::max({r, -c[a], c[a] - (cells_[a] - 1)});
    int64_t lookups = 0;
    for (;; ++r) {
      lookups += visit_shell(q, c, r, k, best, kShellBudget - lookups);
      if (lookups > kShellBudget) return false;
      bool covers_grid = true;
      for (int a = 0; a < 3; ++a) covers_grid &= c[a] - r <= 0 && c[a] + r >= cells_[a] - 1;
      if (covers_grid) return true;
      if (best.i[k - 1] != kKnnNoIndex) {
        // Every unvisited point lies outside the cube of cells [c - r, c + r]: at least `bound` away.
        double bound = kInf;
        for (int a = 0; a < 3; ++a) {
          bound = std::min(bound, q[a] - (lo_[a] + static_cast<double>(c[a] - r) * h_));
          bound = std::min(bound, lo_[a] + static_cast<double>(c[a] + r + 1) * h_ - q[a]);
        }
        bound -= tolerance_;
        if (bound > 0 && best.d[k - 1] * (1 + 8 * kEps) < bound * bound * (1 - 8 * kEps)) return true;
      }
    }
  }

 private:
  // The cell coordinate of v along axis a, clamped far outside the grid (no integer overflow for a
  // distant query; the search stays exact, it only stops later).
  int64_t cell_coord(double v, int a) const {
    const double c = std::floor((v - lo_[a]) * inv_h_);
    return static_cast<int64_t>(std::clamp(c, -4.0 * kMaxCellsPerAxis, 4.0 * kMaxCellsPerAxis));
  }
  int64_t cell_id(const double* p) const {
    int64_t c[3];
    for (int a = 0; a < 3; ++a) c[a] = std::min(cell_coord(p[a], a), cells_[a] - 1);
    return (c[0] * cells_[1] + c[1]) * cells_[2] + c[2];
  }
  int64_t hash(int64_t id) const {
    return static_cast<int64_t>((static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull) >> 20) & mask_;
  }

  // Offers every point of cell (x, y, z) to the k best.
  void visit_cell(const double* q, int64_t x, int64_t y, int64_t z, int k, Best& best) const {
    const int64_t id = (x * cells_[1] + y) * cells_[2] + z;
    for (int64_t slot = hash(id); slot_cell_[slot] != -1; slot = (slot + 1) & mask_) {
      if (slot_cell_[slot] != id) continue;
      for (int64_t s = slot_begin_[slot]; s < slot_end_[slot]; ++s) {
        double d = knn_square_add(q[0] - sorted_[0][s], 0.0);
        d = knn_square_add(q[1] - sorted_[1][s], d);
        d = knn_square_add(q[2] - sorted_[2][s], d);
        knn_insert(d, order_[s], best.d, best.i, k);
      }
      return;
    }
  }

  // The cells at Chebyshev distance exactly r from c that lie in the grid; returns how many, stopping
  // once more than `budget` (a shell of a distant query can span a whole face of the grid).
  int64_t visit_shell(const double* q, const int64_t* c, int64_t r, int k, Best& best, int64_t budget) const {
    int64_t lo[3], hi[3];
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::max<int64_t>(c[a] - r, 0);
      hi[a] = std::min<int64_t>(c[a] + r, cells_[a] - 1);
      if (lo[a] > hi[a]) return 0;
    }
    int64_t visited = 0;
    for (int64_t x = lo[0]; x <= hi[0]; ++x)
      for (int64_t y = lo[1]; y <= hi[1]; ++y) {
        if (visited > budget) return visited;
        const bool face = std::abs(x - c[0]) == r || std::abs(y - c[1]) == r;
        if (face) {
          for (int64_t z = lo[2]; z <= hi[2] && visited <= budget; ++z, ++visited) visit_cell(q, x, y, z, k, best);
        } else {  // only the two cells on the z faces of the shell
          if (c[2] - r >= lo[2]) visit_cell(q, x, y, c[2] - r, k, best), ++visited;
          if (r > 0 && c[2] + r <= hi[2]) visit_cell(q, x, y, c[2] + r, k, best), ++visited;
        }
      }
    return visited;
  }

  double h_, inv_h_, lo_[3], tolerance_;
  int64_t cells_[3];
  std::vector<int64_t> order_;
  std::vector<double> sorted_[3];
  int64_t mask_;
  std::vector<int64_t> slot_cell_, slot_begin_, slot_end_;
};

template <typename T>
void knn_forward(const at::Tensor& x, const at::Tensor& y, const KnnProblem& p, at::Tensor& dists, at::Tensor& idx) {
  const int k = static_cast<int>(p.K), D = static_cast<int>(p.D);
  T* out_d = dists.data_ptr<T>();
  int64_t* out_i = idx.data_ptr<int64_t>();
  for (int64_t b = 0; b < p.B; ++b) {
    const int64_t nx = p.x_lengths[b], ny = p.y_lengths[b];
    if (nx == 0 || ny == 0) continue;
    const std::vector<double> queries = points_of<T>(x, b, nx);
    const std::vector<double> targets = points_of<T>(y, b, ny);
    const Columns columns(targets, ny, D);
    const int kk = static_cast<int>(std::min<int64_t>(k, ny));
    auto write = [&](int64_t i, const Best& best) {
      const int64_t row = (b * p.N + i) * k;
      for (int j = 0; j < kk; ++j) {
        out_d[row + j] = static_cast<T>(best.d[j]);
        out_i[row + j] = best.i[j];
      }
    };
    std::vector<int64_t> pending(static_cast<size_t>(nx));
    for (int64_t i = 0; i < nx; ++i) pending[i] = i;
    if (D == 3 && nx * ny > kBruteForcePairs) {
      const Box box(targets, ny);
      const double extent = box.extent();
      for (double h = finest_cell_size(targets, columns, ny, extent, kk); !pending.empty(); h *= kLevelGrowth) {
        const Grid grid(targets, ny, box, h);
        std::vector<char> done(pending.size(), 0);
        at::parallel_for(0, static_cast<int64_t>(pending.size()), 64, [&](int64_t begin, int64_t end) {
          for (int64_t s = begin; s < end; ++s) {
            Best best(kk);
            if ((done[s] = grid.search(&queries[pending[s] * 3], kk, best))) write(pending[s], best);
          }
        });
        size_t left = 0;
        for (size_t s = 0; s < pending.size(); ++s)
          if (!done[s]) pending[left++] = pending[s];
        pending.resize(left);
        if (!(h < extent)) break;  // one cell spans the cloud: coarser grids would not help
      }
    }
    const KnnTile tile = knn_tile();
    at::parallel_for(0, static_cast<int64_t>(pending.size()), 64, [&](int64_t begin, int64_t end) {
      if (D == 3) {
        constexpr int64_t kBlock = 16;  // queries whose k best stay in L1 together
        const double* q[kBlock];
        Best best[kBlock];
        for (int64_t s0 = begin; s0 < end; s0 += kBlock) {
          const int64_t count = std::min(kBlock, end - s0);
          for (int64_t a = 0; a < count; ++a) {
            q[a] = &queries[pending[s0 + a] * 3];
            best[a] = Best(kk);
          }
          brute_force_3d(tile, q, count, columns, kk, best);
          for (int64_t a = 0; a < count; ++a) write(pending[s0 + a], best[a]);
        }
        return;
      }
      for (int64_t s = begin; s < end; ++s) {
        Best best(kk);
        brute_force(&queries[pending[s] * D], columns, kk, best);
        write(pending[s], best);
      }
    });
  }
}

template <typename T>
void knn_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& idx,
                  at::Tensor& grad_x, at::Tensor& grad_y) {
  using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), D = x.size(2), K = idx.size(2);
  const auto g = grad.accessor<T, 3>();
  const auto xa = x.accessor<T, 3>();
  const auto ya = y.accessor<T, 3>();
  const auto ia = idx.accessor<int64_t, 3>();
  T* gx = grad_x.data_ptr<T>();
  T* gy = grad_y.data_ptr<T>();
  // Pair term 2 g (x_i - y_j) in dimension d.
  auto term = [&](int64_t b, int64_t i, int64_t k, int64_t j, int64_t d) {
    return acc_t(2) * static_cast<acc_t>(g[b][i][k]) * (static_cast<acc_t>(xa[b][i][d]) - static_cast<acc_t>(ya[b][j][d]));
  };
  at::parallel_for(0, B * N, 64, [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / N, i = bi % N;
      for (int64_t d = 0; d < D; ++d) {
        acc_t sum = 0;
        for (int64_t k = 0; k < K; ++k)
          if (ia[b][i][k] >= 0) sum += term(b, i, k, ia[b][i][k], d);
        gx[bi * D + d] = static_cast<T>(sum);
      }
    }
  });
  // Pairs grouped by target with a counting sort, in ascending (i, k) within each target.
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> start(static_cast<size_t>(M + 1), 0);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < K; ++k)
        if (ia[b][i][k] >= 0) ++start[ia[b][i][k] + 1];
    for (int64_t j = 0; j < M; ++j) start[j + 1] += start[j];
    std::vector<int64_t> pairs(static_cast<size_t>(start[M]));
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < K; ++k)
        if (ia[b][i][k] >= 0) pairs[fill[ia[b][i][k]]++] = i * K + k;
    at::parallel_for(0, M, 256, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j)
        for (int64_t d = 0; d < D; ++d) {
          acc_t sum = 0;
          for (int64_t s = start[j]; s < start[j + 1]; ++s) sum += term(b, pairs[s] / K, pairs[s] % K, j, d);
          gy[(b * M + j) * D + d] = static_cast<T>(-sum);
        }
    });
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_points_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                                  const at::Tensor& y_lengths, int64_t k) {
  const KnnProblem p = check_knn_inputs(x, y, x_lengths, y_lengths, k);
  TORCH_CHECK(x.is_cpu(), "fastperc: knn_points_cpu got a tensor on ", x.device());
  at::Tensor dists = at::full({p.B, p.N, p.K}, kInf, x.options());
  at::Tensor idx = at::full({p.B, p.N, p.K}, -1, x.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "knn_points_cpu",
                                  [&] { knn_forward<scalar_t>(x, y, p, dists, idx); });
  return {dists, idx};
}

std::tuple<at::Tensor, at::Tensor> knn_points_backward_cpu(const at::Tensor& grad_dists, const at::Tensor& x,
                                                           const at::Tensor& y, const at::Tensor& idx) {
  check_knn_backward_inputs(grad_dists, x, y, idx);
  TORCH_CHECK(x.is_cpu(), "fastperc: knn_points_backward_cpu got a tensor on ", x.device());
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_y = at::empty(y.sizes(), y.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "knn_points_backward_cpu",
                                  [&] { knn_backward<scalar_t>(grad_dists, x, y, idx, grad_x, grad_y); });
  return {grad_x, grad_y};
}

}  // namespace cpu
}  // namespace fastperc
