// A GPT model config by its shape, for the planner's and cost model's tests.
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

}  // namespace dtrain::test
