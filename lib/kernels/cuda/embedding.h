// Launchers of the embedding kernels (embedding.cu), as cpu::embedding_*.
// Token ids are validated on the host before upload; the kernels trust them.
#pragma once

#include <cstdint>

#include "kernels/cuda/gpt_act.h"

namespace dtrain::cuda::gpt {

// tok (B, T); wte (V, C); wpe (>= T, C); y (B, T, C) = wte[tok] + wpe[t].
void embedding_forward(Act t, const int32_t* tok, const void* wte, const void* wpe, int64_t B,
                       int64_t T, int64_t C, void* y, void* stream);
// y (n, C): row r = wte[tok[r] - v0] for ids in [v0, v0 + vn), zeros otherwise.
void token_embedding_shard_forward(Act t, const int32_t* tok, const void* wte, int64_t v0,
                                   int64_t vn, int64_t n, int64_t C, void* y, void* stream);
// y (B, T, C) += wpe[t].
void position_embedding_add(Act t, const void* wpe, int64_t B, int64_t T, int64_t C, void* y,
                            void* stream);
// dwte (vn, C) rows [v0, v0 + vn) and dwpe (>= T, C) += dy (fp32), each
// element accumulated in token order as the CPU does (the same bits).
void embedding_backward(Act t, const void* dy, const int32_t* tok, int64_t B, int64_t T, int64_t C,
                        int64_t v0, int64_t vn, float* dwte, float* dwpe, void* stream);

}  // namespace dtrain::cuda::gpt
