// Incremental GPT decoding with a key/value cache, on the CPU in fp32, from a
// whole model's parameters (one process, tp = pp = 1): what `dtrain
// generate` runs. Each block keeps the keys and values of every position so
// far, so a new token costs one token's products and one attention row
// instead of a forward of the whole window (the model's forward_layers, which
// stays the reference: `generate --full-window`, and the test that compares
// the two). The math is the model's (pre-norm blocks with GPT-2's or
// LLaMA's parts: LayerNorm or RMSNorm, tanh GELU or SwiGLU, learned or
// rotary positions; a tied or own head); inference only: no dropout, nothing
// kept for a backward.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "config/config.h"
#include "kernels/elementwise_math.h"
#include "model/param.h"

namespace dtrain {

class KvDecoder {
 public:
  // params: a GPT's, whole and fp32 (LoadedModel::model->params); cfg its model section.
  KvDecoder(const ParamStore& params, const ModelConfig& cfg);

  // Appends `tokens` at positions length() .. length() + n - 1 (at most
  // context_length in all; the prompt in one call, then one token at a time)
  // and returns the logits over the vocabulary at the last of them.
  const std::vector<float>& append(std::span<const int32_t> tokens);
  int64_t length() const { return length_; }
  int64_t capacity() const { return cfg_.context_length; }
  // Forgets every position (to start again from another window).
  void reset() { length_ = 0; }

 private:
  struct BlockParams {
    const float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    const float *ln2_w, *ln2_b, *fc_w, *fc_b, *fc2_w, *fc2_b;
  };
  void reserve(int64_t n);  // work buffers for n new tokens
  // y (n, C) = norm(x (n, C)): cfg_'s LayerNorm or RMSNorm.
  void norm(const float* x, int64_t n, const float* w, const float* b, float* y);
  // The cached width per position: n_kv_head heads of keys (and of values).
  int64_t kv_width() const { return cfg_.n_embd / cfg_.n_head * cfg_.kv_heads(); }

  ModelConfig cfg_;
  math::Rope rope_;  // rope_of(cfg_): theta 0 without rotary positions
  const float *wte_, *wpe_, *lnf_w_, *lnf_b_;
  const float* head_;  // the output head's weight: wte_, or lm_head.weight when untied
  std::vector<BlockParams> blocks_;
  std::vector<std::vector<float>> keys_, values_;  // per block: (context_length, kv_width())
  int64_t length_ = 0;
  // Work buffers for up to `rows_` new tokens.
  int64_t rows_ = 0;
  std::vector<float> x_, h_, qkv_, y_, hidden_, act_, scores_, logits_;
  std::vector<float> mean_, rstd_;
};

}  // namespace dtrain
