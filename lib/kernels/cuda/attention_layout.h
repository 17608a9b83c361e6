// Where the GPU attention keeps its intermediates inside the scratch buffer the
// layer allocates at plan() time: a pure function (tested in CI without a GPU).
//
// Regions, each 256-byte aligned: the head-major (B*nh, T, hs) copies of Q, K,
// V, of O (forward) or dO (backward), and of dQ, dK, dV (backward), all in
// the activation dtype; then one chunk of fp32 (G, T, T) score matrices (the
// scores QK^T before the softmax, dP = dO V^T before the softmax backward) for
// G heads at a time, G chosen so that a chunk stays within `score_budget`
// bytes (at least one head). The probabilities themselves live in the layer's
// att (B, nh, T, T) in the activation dtype, as on the CPU.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace dtrain::cuda {

inline constexpr int64_t kAttnScoreBytes = int64_t{128} << 20;

struct AttnLayout {
  int64_t chunk = 1;  // heads per score chunk (G)
  size_t q = 0, k = 0, v = 0, o = 0, dq = 0, dk = 0, dv = 0;  // byte offsets of the head-major regions
  size_t scores = 0;  // byte offset of the (G, T, T) fp32 scores
  size_t bytes = 0;   // total
};

constexpr size_t attn_align(size_t b) { return (b + 255) / 256 * 256; }

constexpr AttnLayout attn_layout(int64_t B, int64_t T, int64_t C, int64_t nh, int act_bytes,
                                 int64_t score_budget = kAttnScoreBytes) {
  AttnLayout l;
  const int64_t bh = B * nh;
  const int64_t per_head = T * T * 4;
  l.chunk = std::max<int64_t>(1, std::min<int64_t>(bh, per_head > 0 ? score_budget / per_head : bh));
  const size_t region = attn_align(static_cast<size_t>(B * T * C) * static_cast<size_t>(act_bytes));
  size_t at = 0;
  for (size_t* r : {&l.q, &l.k, &l.v, &l.o, &l.dq, &l.dk, &l.dv}) {
    *r = at;
    at += region;
  }
  l.scores = at;
  l.bytes = at + attn_align(static_cast<size_t>(l.chunk * per_head));
  return l;
}

}  // namespace dtrain::cuda
