// 2-D convolution (NCHW, weight (O, C, kh, kw) as in PyTorch) as im2col + GEMM.
//
// Why this shape: a batch is split into a fixed number of chunks
// (kConvChunks, independent of the thread count) that OpenMP runs in parallel;
// inside a chunk, groups of up to `group` images are unrolled side by side
// into one column matrix so that the GEMMs stay wide even at 7x7 resolution:
//   col (K = C*kh*kw, G*Ho*Wo);  Y (O, G*Ho*Wo) = W (O, K) @ col
// Backward reuses the same chunks: each chunk sums its share of dW in its own
// slot and the slots are added in order afterwards, so every result is
// bit-identical for any number of threads. The column matrix lives in
// per-thread scratch (reused chunk after chunk, so it stays in cache) and is
// rebuilt in backward rather than kept from forward: it is several times the
// size of the activation, and rebuilding it is cheap next to the GEMMs.
// Images are padded once into scratch, so that every column row is a plain
// strided copy; for stride-1 convolutions at large widths the columns span
// the padded width (a few junk columns per row, dropped afterwards), which
// makes every row a single contiguous copy (see Layout in conv.cpp).
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

inline constexpr int64_t kConvChunks = 16;

struct ConvGeom {
  int64_t c = 0, h = 0, w = 0;  // input channels and size
  int64_t o = 0;                // output channels
  int64_t kh = 1, kw = 1, stride = 1, pad = 0;

  int64_t ho() const { return (h + 2 * pad - kh) / stride + 1; }
  int64_t wo() const { return (w + 2 * pad - kw) / stride + 1; }
  int64_t k() const { return c * kh * kw; }  // rows of the column matrix
  int64_t in_size() const { return c * h * w; }
  int64_t out_size() const { return o * ho() * wo(); }
};

// Images unrolled together into one column matrix, for batches up to max_batch.
int64_t conv_group(const ConvGeom& g, int64_t max_batch);
// Scratch elements the forward and backward kernels need for batches up to
// max_batch on up to `threads` threads (the kernels use no more than that).
// The scratch must be zero-filled before its first use.
int64_t conv_scratch_size(const ConvGeom& g, int64_t max_batch, int threads);

// x (n, C, H, W), w (O, C, kh, kw), bias (O) or null -> y (n, O, Ho, Wo).
// `threads`: as given to conv_scratch_size.
template <class T>
void conv2d_forward(const ConvGeom& g, int64_t n, int64_t group, const T* x, const T* w,
                    const T* bias, T* y, T* scratch, int threads);

// Given dy (n, O, Ho, Wo) for the input x of the last forward: dw (O, C, kh, kw)
// and db (O, may be null) accumulate (+=); dx (n, C, H, W), if not null, is
// set to dres + dL/dx (dres may be null, or equal to dx to add in place).
template <class T>
void conv2d_backward(const ConvGeom& g, int64_t n, int64_t group, const T* x, const T* w,
                     const T* dy, const T* dres, T* dx, T* dw, T* db, T* scratch, int threads);

// bf16 mixed precision: the same passes with bf16 images, weights (and bias)
// and output gradients, every product summed in fp32 (gemm_bf16): y and dx are
// rounded once from fp32 (dx = dres + the fp32 col2im sum), dw and db (fp32)
// accumulate. scratch: conv_scratch_size() fp32 elements, zero-filled (the
// column matrix and padded image are kept in bf16 inside it, the products and
// the padded input gradient in fp32).
void conv2d_forward_bf16(const ConvGeom& g, int64_t n, int64_t group, const bf16* x, const bf16* w,
                         const bf16* bias, bf16* y, float* scratch, int threads);
void conv2d_backward_bf16(const ConvGeom& g, int64_t n, int64_t group, const bf16* x, const bf16* w,
                          const bf16* dy, const bf16* dres, bf16* dx, float* dw, float* db,
                          float* scratch, int threads);

}  // namespace dtrain::cpu
