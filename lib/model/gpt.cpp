// The GPT model builder (nanoGPT semantics; LLaMA's parts where the config
// asks: RMSNorm, SwiGLU, rotary positions): the top-level layers "embed",
// "blocks.0" .. "blocks.{n-1}", "ln_f", "lm_head" (tied to wte, or with
// model.tie_embeddings = false its own lm_head.weight) and the
// cross-entropy loss. That flat list is what pipeline parallelism cuts into
// stages. FLOPs in the layers' costs count matrix products only (the
// convention MFU is quoted in); elementwise work is under 1% of a block's
// FLOPs at GPT-2 sizes.
//
// Tensor parallelism (ModelParallel::tp with t > 1 ranks) follows
// Megatron-LM: attention heads and MLP hidden features are split inside the
// blocks, the vocabulary is split across the embedding, the tied head (whose
// logits stay split) and a vocabulary-parallel cross-entropy; layer norms,
// wpe and the row-parallel biases are replicated. With sequence parallelism
// (par.sequence_parallel) the activations between the tp regions, from the
// embedding's output to the head's input, are slices of the sequence
// (model/seq_parallel.h); ln_f's gradients are all-reduced like the blocks'.
#include <cmath>
#include <cstdint>

#include "config/validate.h"
#include "model/block.h"
#include "model/cross_entropy.h"
#include "model/embedding.h"
#include "model/layernorm.h"
#include "model/lm_head.h"
#include "model/model.h"
#include "model/vocab_parallel_cross_entropy.h"

namespace dtrain {

namespace {

void validate(const ModelConfig& cfg, int64_t seq_len, int64_t tp, bool seq_parallel) {
  std::vector<std::string> problems;
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) problems.push_back(fmt::format("model.{} must be positive (got {})", key, v));
  };
  positive("vocab_size", cfg.vocab_size);
  positive("context_length", cfg.context_length);
  positive("n_layer", cfg.n_layer);
  positive("n_head", cfg.n_head);
  positive("n_embd", cfg.n_embd);
  if (cfg.n_head > 0 && cfg.n_embd % cfg.n_head != 0)
    problems.push_back(fmt::format("model.n_embd ({}) must be divisible by model.n_head ({})",
                                   cfg.n_embd, cfg.n_head));
  else if (cfg.rope() && cfg.n_head > 0 && (cfg.n_embd / cfg.n_head) % 2 != 0)
    problems.push_back(fmt::format("model.position = \"rope\" turns pairs of each head's features: the head "
                                   "width model.n_embd / model.n_head ({} / {} = {}) must be even",
                                   cfg.n_embd, cfg.n_head, cfg.n_embd / cfg.n_head));
  if (cfg.n_kv_head < 0 || (cfg.n_head > 0 && cfg.n_kv_head > 0 && cfg.n_head % cfg.n_kv_head != 0))
    problems.push_back(fmt::format("model.n_kv_head ({}) must divide model.n_head ({}): each key/value head "
                                   "serves a group of n_head / n_kv_head query heads (0: n_head)",
                                   cfg.n_kv_head, cfg.n_head));
  if (cfg.rope_scaling == "llama3" && !(cfg.rope_high_freq_factor > cfg.rope_low_freq_factor))
    problems.push_back(fmt::format("model.rope_high_freq_factor ({}) must exceed model.rope_low_freq_factor ({})",
                                   cfg.rope_high_freq_factor, cfg.rope_low_freq_factor));
  if (!(cfg.dropout >= 0 && cfg.dropout < 1))
    problems.push_back(fmt::format("model.dropout must be in [0, 1) (got {})", cfg.dropout));
  if (seq_len <= 0 || seq_len > cfg.context_length)
    problems.push_back(fmt::format("train.seq_len ({}) must be in [1, model.context_length = {}]",
                                   seq_len, cfg.context_length));
  if (cfg.vocab_size > INT32_MAX)
    problems.push_back(fmt::format("model.vocab_size ({}) does not fit int32 token ids", cfg.vocab_size));
  if (tp > 1) {
    if (cfg.n_head > 0 && cfg.n_head % tp != 0)
      problems.push_back(fmt::format(
          "model.n_head ({}) is not divisible by parallel.tp ({}): tensor parallelism splits the "
          "attention heads across its ranks",
          cfg.n_head, tp));
    if (cfg.n_head > 0 && cfg.n_head % tp == 0 && cfg.n_kv_head > 0 && cfg.n_kv_head % tp != 0)
      problems.push_back(fmt::format(
          "model.n_kv_head ({}) is not divisible by parallel.tp ({}): tensor parallelism splits the "
          "key/value heads across its ranks with their query heads",
          cfg.n_kv_head, tp));
    // (With n_head divisible, so is n_embd and GELU's default 4 n_embd.)
    if (cfg.n_head > 0 && cfg.n_head % tp == 0 && cfg.ffn_width() % tp != 0)
      problems.push_back(fmt::format(
          "model.ffn_hidden ({}{}) is not divisible by parallel.tp ({}): tensor parallelism splits the "
          "MLP's hidden features across its ranks",
          cfg.ffn_width(), cfg.ffn_hidden > 0 ? "" : fmt::format(", the default for model.mlp = \"{}\"", cfg.mlp),
          tp));
    if (cfg.vocab_size > 0 && cfg.vocab_size % tp != 0) {
      problems.push_back(fmt::format(
          "model.vocab_size ({}) is not divisible by parallel.tp ({}); use a padded vocabulary "
          "such as {}",
          cfg.vocab_size, tp, config::padded_vocab(cfg.vocab_size, tp)));
    }
  }
  if (seq_parallel && tp <= 1)
    problems.push_back("parallel.sequence_parallel = true needs parallel.tp > 1: it splits the "
                       "sequence across the tensor-parallel ranks");
  if (seq_parallel && tp > 1 && seq_len > 0 && seq_len % tp != 0)
    problems.push_back(fmt::format("train.seq_len ({}) is not divisible by parallel.tp ({}): "
                                   "parallel.sequence_parallel splits the sequence across its ranks",
                                   seq_len, tp));
  if (!problems.empty()) throw ConfigError(problems);
}

}  // namespace

math::Rope rope_of(const ModelConfig& cfg) {
  if (!cfg.rope()) return math::Rope(0.0);
  if (cfg.rope_scaling != "llama3") return math::Rope(cfg.rope_theta);
  return math::Rope(cfg.rope_theta, cfg.rope_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor,
                    static_cast<double>(cfg.rope_original_context));
}

void build_gpt(Model& m, const ModelConfig& cfg, int64_t seq_len, const ModelParallel& par) {
  Communicator* tp = par.tp_size() > 1 ? par.tp : nullptr;
  validate(cfg, seq_len, par.tp_size(), par.sequence_parallel);
  const bool sp = par.sequence_parallel && tp;
  const int64_t C = cfg.n_embd, L = cfg.n_layer;
  const double proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(L));
  // Top-level layers: 0 embed, 1..L blocks, L+1 ln_f, L+2 lm_head.
  m.total_layers = L + 3;
  const int64_t first = par.first_layer, last = par.last_layer < 0 ? m.total_layers : par.last_layer;
  DTRAIN_CHECK(0 <= first && first < last && last <= m.total_layers,
               "GPT stage [{}, {}) of {} top-level layers", first, last, m.total_layers);
  auto in_stage = [&](int64_t i) { return par.holds(i, m.total_layers); };

  Param* wte = nullptr;
  if (in_stage(0)) {
    auto embed = std::make_unique<TokenPositionEmbedding>(m.params, "embed", cfg.vocab_size,
                                                          cfg.context_length, C, cfg.dropout, tp, sp,
                                                          /*learned_positions=*/!cfg.rope());
    wte = &embed->wte();
    wte->tied = cfg.tie_embeddings;  // to the output head
    m.add_layer(std::move(embed));
  }
  const BlockSpec spec{.c = C,
                        .n_head = cfg.n_head,
                        .n_kv_head = cfg.kv_heads(),
                        .ffn_hidden = cfg.ffn_width(),
                        .bias = cfg.bias,
                        .dropout = cfg.dropout,
                        .proj_std = proj_std,
                        .rms_norm = cfg.rms_norm(),
                        .swiglu = cfg.swiglu(),
                        .rope = rope_of(cfg)};
  for (int64_t i = 0; i < L; ++i)
    if (in_stage(1 + i)) m.add_layer(std::make_unique<Block>(m.params, fmt::format("blocks.{}", i), spec, tp, sp));
  if (in_stage(L + 1)) {
    auto ln_f = std::make_unique<LayerNorm>(m.params, "ln_f", C, cfg.bias, cfg.rms_norm());
    if (sp) ln_f->set_sequence_parallel(tp);
    m.add_layer(std::move(ln_f));
  }
  if (in_stage(L + 2)) {
    if (!cfg.tie_embeddings) {
      // The head's own weight (LLaMA), split by vocabulary as wte is.
      Param& w = tp ? m.params.add_sharded("lm_head.weight",
                                           TokenPositionEmbedding::vocab_shard(cfg.vocab_size, C, *tp),
                                           Init::normal(0.02), true)
                    : m.params.add("lm_head.weight", Shape{cfg.vocab_size, C}, Init::normal(0.02), true);
      m.add_layer(std::make_unique<LmHead>("lm_head", w, tp, sp, /*owned=*/true));
    } else if (!wte) {
      // The head's stage does not hold the embedding: it keeps its own copy of
      // the tied weight (same name, so the same init); the step loop sums the
      // two copies' gradients so that they stay equal. With tp it is split
      // by vocabulary as the embedding's is, so tp rank r's copies match.
      wte = tp ? &m.params.add_sharded("wte.weight",
                                       TokenPositionEmbedding::vocab_shard(cfg.vocab_size, C, *tp),
                                       Init::normal(0.02), true)
               : &m.params.add("wte.weight", Shape{cfg.vocab_size, C}, Init::normal(0.02), true);
      wte->primary = false;
      wte->tied = true;
    }
    if (cfg.tie_embeddings) m.add_layer(std::make_unique<LmHead>("lm_head", *wte, tp, sp));
    // The softmax covers the used ids only: a padded vocabulary's rows are never predicted.
    if (tp)
      m.loss = std::make_unique<VocabParallelCrossEntropyLoss>(*tp, cfg.vocab_size, cfg.used_vocab());
    else
      m.loss = std::make_unique<CrossEntropyLoss>(cfg.used_vocab());
  }
  m.sample_shape = Shape{seq_len};
  m.target_sample_shape = Shape{seq_len};
}

}  // namespace dtrain
