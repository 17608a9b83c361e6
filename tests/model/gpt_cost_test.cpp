// GPT costs at the GPT-2 124M shape (built without allocating it): parameter
// count against the known value, FLOPs against 2 * params * tokens plus the
// attention products.
#include <doctest/doctest.h>

#include "model/model.h"

using namespace dtrain;

namespace {

ModelConfig gpt2_124m() {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = 50304;
  c.context_length = 1024;
  c.n_layer = 12;
  c.n_head = 12;
  c.n_embd = 768;
  c.dropout = 0.0;
  c.bias = true;
  return c;
}

}  // namespace

TEST_CASE("GPT-2 124M: parameter count from the store and from the layers' costs") {
  const ModelConfig cfg = gpt2_124m();
  auto whole = describe_model(cfg, 1024);
  Model& m = *whole;
  const int64_t V = cfg.vocab_size, T = cfg.context_length, C = cfg.n_embd, L = cfg.n_layer;
  const int64_t per_block = 2 * C               // ln1
                            + 3 * C * C + 3 * C  // attn.qkv
                            + C * C + C          // attn.proj
                            + 2 * C              // ln2
                            + 4 * C * C + 4 * C  // mlp.fc
                            + 4 * C * C + C;     // mlp.proj
  const int64_t expected = V * C + T * C + L * per_block + 2 * C;
  CHECK(expected == 124475904);  // nanoGPT's count with the padded vocabulary

  int64_t store = 0;
  for (const auto& p : m.params.all()) store += p->numel();
  CHECK(store == expected);
  CHECK(m.cost(4).params == expected);  // the tied head adds none
}

TEST_CASE("GPT-2 124M: FLOPs are 2 * weights * tokens plus the attention products") {
  const ModelConfig cfg = gpt2_124m();
  auto whole = describe_model(cfg, 1024);
  Model& m = *whole;
  const double B = 4, T = 1024, C = 768, V = 50304, nh = 12, hs = C / nh;
  const double tokens = B * T;
  const std::vector<Cost> costs = m.layer_costs(4);
  REQUIRE(costs.size() == 12 + 4);  // embed, 12 blocks, ln_f, lm_head, loss

  const Cost& block = costs[1];
  const double attention = 2 * 2 * B * nh * T * T * hs;  // Q K^T and P V
  const double weights = 12 * C * C;                     // matrix entries of one block
  CHECK(block.fwd_flops == 2 * weights * tokens + attention);
  CHECK(block.bwd_flops == 2 * block.fwd_flops);
  // Within 0.2% of the rule of thumb with every parameter (biases, norms).
  CHECK(block.fwd_flops == doctest::Approx(2.0 * block.params * tokens + attention).epsilon(2e-3));

  const Cost& head = costs[14];
  CHECK(head.fwd_flops == 2 * C * V * tokens);
  CHECK(costs[0].fwd_flops == 0);  // lookups

  // Activation bytes kept for backward, per block (fp32): inputs of ln1, qkv,
  // attention (qkv output + probabilities), proj, ln2 (+ mean/rstd), fc, GELU, proj,
  // and the two projections' outputs that the residual dropouts read.
  const double per_token = 4 * (C + 2 + C + 3 * C + C + C + 2 + C + 4 * C + 4 * C + 2 * C);
  CHECK(block.act_bytes == per_token * tokens + 4 * B * nh * T * T);
}
