#pragma once
// Checks and key packing of the sparse convolution ops, shared by every device.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zero.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

#include "common/checks.h"
#include "common/sparse_math.h"

namespace fastperc {

// Host check of site `row` of an int32 (N, 4) accessor-like array.
inline void check_site_in_key_space(const int32_t* site, int64_t row) {
  TORCH_CHECK(site_in_key_space(site[0], site[1], site[2], site[3]), "fastperc: site ", row, " (", site[0], ", ",
              site[1], ", ", site[2], ", ", site[3], ") is outside the key space: batch must lie in [0, ",
              kSparseBatchLimit - 1, "] and x, y, z in [0, ", kSparseKeyLimit - 1, "]");
}

// Kernel maps hold int32 rows: half the memory of int64 (a 3x3x3 map of 1M sites is 108 MB), and a
// map under glibc's 32 MiB mmap threshold is reused by the allocator instead of page-faulting fresh
// memory on every build. Sites per tensor are therefore limited to 2^31 - 1.
constexpr int64_t kSparseMaxSites = (int64_t{1} << 31) - 1;

inline void check_sparse_coords(const at::Tensor& coords, const char* name) {
  TORCH_CHECK(coords.defined() && coords.dim() == 2 && coords.size(1) == 4, "fastperc: ", name,
              " must be (N, 4) int32 (batch, x, y, z), got ", coords.defined() ? coords.sizes() : at::IntArrayRef{});
  TORCH_CHECK(coords.scalar_type() == at::kInt, "fastperc: ", name, " must be int32, got ", coords.scalar_type());
  TORCH_CHECK(coords.size(0) <= kSparseMaxSites, "fastperc: ", name, " has ", coords.size(0), " sites; at most ",
              kSparseMaxSites, " fit the int32 kernel maps");
}

// (K, Cin, Cout) weights and (N, Cin) features of the same float dtype and device. float16 and
// bfloat16 only where the device's kernel takes them (CUDA, accumulating in float32).
inline void check_sparse_features(const at::Tensor& feats, const at::Tensor& weight, bool half_types) {
  TORCH_CHECK(feats.dim() == 2, "fastperc: feats must be (N, C_in), got ", feats.sizes());
  TORCH_CHECK(weight.dim() == 3, "fastperc: weight must be (K, C_in, C_out), got ", weight.sizes());
  TORCH_CHECK(weight.size(1) == feats.size(1), "fastperc: weight has C_in = ", weight.size(1), " but feats have ",
              feats.size(1), " channels");
  TORCH_CHECK(feats.scalar_type() == weight.scalar_type(), "fastperc: feats (", feats.scalar_type(),
              ") and weight (", weight.scalar_type(), ") must have the same dtype");
  const auto t = feats.scalar_type();
  const bool half = t == at::kHalf || t == at::kBFloat16;
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || (half_types && half), "fastperc: sparse convolution on ",
              feats.device().type(), " takes float32 or float64", half_types ? ", float16 or bfloat16" : "", ", got ", t);
  TORCH_CHECK(feats.device() == weight.device(), "fastperc: feats and weight are on different devices");
  TORCH_CHECK(weight.size(2) > 0 && weight.size(1) > 0, "fastperc: weight must have C_in, C_out > 0");
}

inline void check_kernel_map(const at::Tensor& kmap, int64_t kernel_volume, const at::Tensor& like) {
  TORCH_CHECK(kmap.dim() == 2 && kmap.size(0) == kernel_volume, "fastperc: kernel map must be (K = ",
              kernel_volume, ", N_out), got ", kmap.sizes());
  TORCH_CHECK(kmap.scalar_type() == at::kInt, "fastperc: kernel map must be int32, got ", kmap.scalar_type());
  TORCH_CHECK(kmap.device() == like.device(), "fastperc: kernel map is on ", kmap.device(), " but feats on ",
              like.device());
}

inline void check_sparse_grad_out(const at::Tensor& grad_out, const at::Tensor& feats, const at::Tensor& weight,
                                  const at::Tensor& kmap) {
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == kmap.size(1) && grad_out.size(1) == weight.size(2),
              "fastperc: grad_out must be (N_out = ", kmap.size(1), ", C_out = ", weight.size(2), "), got ",
              grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == feats.scalar_type(), "fastperc: grad_out must be ", feats.scalar_type());
  TORCH_CHECK(grad_out.device() == feats.device(), "fastperc: grad_out is on ", grad_out.device(), " but feats on ",
              feats.device());
}

// The inverse map (K, N_in) a caller may pass to the backward. Its entries are checked by the kernels
// against kmap (inverse_pair_ok): an inverse map of another convolution is an error, not wrong gradients.
inline void check_inverse_map(const at::Tensor& inv, int64_t kernel_volume, const at::Tensor& feats) {
  check_kernel_map(inv, kernel_volume, feats);
  TORCH_CHECK(inv.size(1) == feats.size(0), "fastperc: inv_map must be (K, N_in = ", feats.size(0), "), got ",
              inv.sizes());
}

// Every check of sparse_conv_backward's inputs; returns the given inverse map, contiguous, or an
// undefined tensor (the kernels then build it).
inline at::Tensor check_sparse_conv_backward(const at::Tensor& grad_out, const at::Tensor& feats,
                                             const at::Tensor& weight, const at::Tensor& kmap,
                                             const std::optional<at::Tensor>& inv_map, bool half_types) {
  check_sparse_features(feats, weight, half_types);
  check_kernel_map(kmap, weight.size(0), feats);
  check_sparse_grad_out(grad_out, feats, weight, kmap);
  if (!inv_map.has_value() || !inv_map->defined()) return at::Tensor();
  check_inverse_map(*inv_map, weight.size(0), feats);
  return inv_map->contiguous();
}

inline std::vector<int64_t> check_triple(at::IntArrayRef v, const char* name, int64_t min_value) {
  TORCH_CHECK(v.size() == 3, "fastperc: ", name, " must have 3 entries, got ", v.size());
  for (int64_t e : v) TORCH_CHECK(e >= min_value, "fastperc: ", name, " entries must be >= ", min_value, ", got ", v);
  return {v[0], v[1], v[2]};
}

// Kernel size, stride, padding and dilation of a sparse convolution, three entries each, and the
// kernel volume K = Kx * Ky * Kz.
struct SparseConvGeometry {
  std::vector<int64_t> ks, st, pd, dl;
  int64_t volume;
};

// Every entry is at most the key range (65536): larger ones reach no other site, and the bound keeps
// o * s - p + k * d within int64 and the kernel volume below 2^48.
inline SparseConvGeometry check_conv_geometry(at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                              at::IntArrayRef padding, at::IntArrayRef dilation) {
  SparseConvGeometry g{check_triple(kernel_size, "kernel_size", 1), check_triple(stride, "stride", 1),
                       check_triple(padding, "padding", 0), check_triple(dilation, "dilation", 1), 0};
  for (const auto* v : {&g.ks, &g.st, &g.pd, &g.dl})
    for (int64_t e : *v)
      TORCH_CHECK(e <= kSparseKeyLimit, "fastperc: kernel_size, stride, padding and dilation entries must be <= ",
                  kSparseKeyLimit, " (the key range), got kernel_size ", at::IntArrayRef(g.ks), ", stride ",
                  at::IntArrayRef(g.st), ", padding ", at::IntArrayRef(g.pd), ", dilation ", at::IntArrayRef(g.dl));
  g.volume = checked_size_product({g.ks[0], g.ks[1], g.ks[2]}, "the kernel volume");
  return g;
}

// A kernel map of `volume` rows of n entries must fit int64 indexing (its allocation then says
// whether it fits memory).
inline void check_map_size(int64_t volume, int64_t n, const char* what) {
  checked_size_product({volume, n}, what);
}

// The dense output grid of a (transposed) convolution over an input grid `shape`, per axis; it must be
// non-empty and fit the key space.
inline std::vector<int64_t> check_output_grid(const SparseConvGeometry& g, const std::vector<int64_t>& shape,
                                              bool transposed) {
  std::vector<int64_t> out(3);
  for (int a = 0; a < 3; ++a) out[a] = conv_output_extent(shape[a], g.ks[a], g.st[a], g.pd[a], g.dl[a], transposed);
  for (int a = 0; a < 3; ++a)
    TORCH_CHECK(out[a] > 0 && out[a] <= kSparseKeyLimit, "fastperc: the output grid ", out, " of spatial_shape ",
                shape, " is empty or beyond 65536");
  return out;
}

// The gradients sparse_conv_backward returns, (grad_feats, grad_weight): allocated where output_mask
// asks for them (the kernels write every entry), empty ((0,)) where it does not, zero-filled when
// there are no sites on one side (no pair to write them).
inline std::tuple<at::Tensor, at::Tensor> sparse_backward_outputs(const at::Tensor& feats, const at::Tensor& weight,
                                                                  std::array<bool, 2> output_mask, bool no_pairs) {
  at::Tensor grad_feats = output_mask[0] ? at::empty_like(feats) : at::empty({0}, feats.options());
  at::Tensor grad_weight = output_mask[1] ? at::empty_like(weight) : at::empty({0}, weight.options());
  if (no_pairs) {
    if (output_mask[0]) grad_feats.zero_();
    if (output_mask[1]) grad_weight.zero_();
  }
  return {grad_feats, grad_weight};
}

}  // namespace fastperc
