#pragma once
// Every fastperc schema, in one place: csrc/ops.cpp registers them (TORCH_LIBRARY(fastperc)), and the
// tests' CUDA emulator (tests/cuda_emu) registers the same strings under its own namespace, so the two
// cannot drift apart. Fake (meta) kernels and autograd formulas are registered from Python
// (fastperc/ops.py).

namespace fastperc {
namespace schema {

// x: (B, C, N) float16/bfloat16/float32/float64, any strides. Returns scale * x @ x^T as (B, C, C)
// in the accumulation dtype (float64 for float64 input, float32 otherwise).
inline constexpr const char* kGramSchema =
    "gram(Tensor x, float scale) -> Tensor";
// scale * (grad + grad^T) @ x, returned in x's dtype: the gradient of gram() w.r.t. x.
inline constexpr const char* kGramBackwardSchema =
    "gram_backward(Tensor grad, Tensor x, float scale) -> Tensor";
// loss = loss_scale * sum_b ||gram_scale * x_b x_b^T - target_b||_F^2 with target (1 or B, C, C) in the
// accumulation dtype. Also returns the residual (B, C, C) the backward needs: no Gram autograd graph.
inline constexpr const char* kStyleLossSchema =
    "style_loss(Tensor x, Tensor target, float gram_scale, float loss_scale) -> (Tensor, Tensor)";

// SSIM of x and y, (B, C, H, W) or (B, C, D, H, W), with the separable window `window` (odd taps, in
// the accumulation dtype) and padding 0 = valid, 1 = zero ("same"), 2 = reflect ("same").
// Returns per-image-channel (B, C) means of the SSIM map, of the contrast-structure (CS) map and of
// |x - y| (for the fused L1 + SSIM loss), in the accumulation dtype.
inline constexpr const char* kSsimSchema =
    "ssim(Tensor x, Tensor y, Tensor window, float c1, float c2, int padding) -> (Tensor, Tensor, Tensor)";
// The SSIM map itself: (B, C, H', W') or (B, C, D', H', W').
inline constexpr const char* kSsimMapSchema =
    "ssim_map(Tensor x, Tensor y, Tensor window, float c1, float c2, int padding) -> Tensor";
// Gradients (x, y) of sum(grad_ssim * SSIM + grad_cs * CS) + sum(grad_l1 * |x - y|): per-pixel
// weights shaped like the map (grad_ssim, grad_cs) and like x (grad_l1), any strides. output_mask
// says which of the two are wanted; an unwanted one is not computed and comes back empty, (0,).
inline constexpr const char* kSsimBackwardSchema =
    "ssim_backward(Tensor grad_ssim, Tensor? grad_cs, Tensor? grad_l1, Tensor x, Tensor y, Tensor window, "
    "float c1, float c2, int padding, bool[2] output_mask=[True, True]) -> (Tensor, Tensor)";

// Sparse convolution. Sites are int32 (N, 4) = (batch, x, y, z), batch in [0, 32767] and x, y, z in
// [0, 65535];
// kernel offset k = (kx * Ky + ky) * Kz + kz. For output site o and offset k a convolution reads the
// input site o * stride - padding + k * dilation (transposed: o = i * stride - padding + k * dilation).
// The kernel map (K, N_out) int32 holds that input's row, or -1.
inline constexpr const char* kSparseKernelMapSchema =
    "sparse_kernel_map(Tensor in_coords, Tensor out_coords, int[] kernel_size, int[] stride, int[] padding, "
    "int[] dilation, bool transposed) -> Tensor";
// The output sites of a regular (or transposed) convolution: every site of the dense output grid
// (spatial_shape is the input grid) whose window holds an input site, sorted by (batch, x, y, z).
inline constexpr const char* kSparseOutCoordsSchema =
    "sparse_out_coords(Tensor in_coords, int[] kernel_size, int[] stride, int[] padding, int[] dilation, "
    "int[] spatial_shape, bool transposed) -> Tensor";
// out[j] = sum_k feats[kmap[k, j]] @ weight[k]: (N_out, C_out). inv_map (K, N_in), optional, is the
// map read the other way (inv_map[k, kmap[k, j]] = j); the backward needs it and rebuilds it if absent.
inline constexpr const char* kSparseConvSchema =
    "sparse_conv(Tensor feats, Tensor weight, Tensor kmap, Tensor? inv_map=None) -> Tensor";
// (grad_feats, grad_weight) of sparse_conv; a gradient that output_mask leaves out is not computed
// and comes back empty ((0,)), like ssim_backward's.
inline constexpr const char* kSparseConvBackwardSchema =
    "sparse_conv_backward(Tensor grad_out, Tensor feats, Tensor weight, Tensor kmap, Tensor? inv_map=None, "
    "bool[2] output_mask=[True, True]) -> (Tensor, Tensor)";

// K nearest neighbours: for each of the first x_lengths[b] points of x[b] (B, N, D), its k nearest
// among the first y_lengths[b] points of y[b] (B, M, D) (lengths int64 (B,)), nearest first, ties to
// the lowest index: (squared distances (B, N, k) in x's dtype, indices (B, N, k) int64). Padded
// queries and neighbours beyond a cloud's size get inf and -1. k <= 32 and D <= 32 (common/knn_math.h).
inline constexpr const char* kKnnPointsSchema =
    "knn_points(Tensor x, Tensor y, Tensor x_lengths, Tensor y_lengths, int k) -> (Tensor, Tensor)";
// (grad_x, grad_y) of sum(grad_dists * dists) for the pairs idx lists (-1: none), deterministic.
inline constexpr const char* kKnnPointsBackwardSchema =
    "knn_points_backward(Tensor grad_dists, Tensor x, Tensor y, Tensor idx) -> (Tensor, Tensor)";

}  // namespace schema
}  // namespace fastperc
