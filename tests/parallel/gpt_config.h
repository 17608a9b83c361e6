// A GPT model config by its shape, for the planner's and cost model's tests;
// and LLaMA's parts on a GPT config, for the tests of any stage.
#pragma once

#include <cstdint>

#include "config/config.h"

namespace dtrain::test {

inline ModelConfig gpt(int64_t layers, int64_t width, int64_t heads, int64_t vocab, int64_t context) {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = vocab;
  c.context_length = context;
  c.n_layer = layers;
  c.n_head = heads;
  c.n_embd = width;
  c.dropout = 0.0;
  c.bias = true;
  return c;
}

// `c` with LLaMA's parts: RMSNorm, a SwiGLU MLP of width ffn, rotary positions
// of base theta, no biases, an untied head.
inline ModelConfig llama_parts(ModelConfig c, int64_t ffn, double theta) {
  c.norm = "rmsnorm";
  c.mlp = "swiglu";
  c.position = "rope";
  c.rope_theta = theta;
  c.ffn_hidden = ffn;
  c.bias = false;
  c.tie_embeddings = false;
  return c;
}

}  // namespace dtrain::test
