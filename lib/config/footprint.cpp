#include "config/footprint.h"

#include <algorithm>
#include <cmath>

namespace dtrain::config {

Footprint footprint(const Config& c) {
  Footprint f;
  const double tp = std::max<double>(1, static_cast<double>(c.parallel.tp));
  const double pp = std::max<double>(1, static_cast<double>(c.parallel.pp));
  const double dp = std::max<double>(1, static_cast<double>(c.parallel.dp));
  const double B = static_cast<double>(std::max<int64_t>(1, c.train.micro_batch));
  const double accum = static_cast<double>(std::max<int64_t>(1, c.train.grad_accum));
  const double in_flight = std::min(pp, accum);  // micro-batches a 1F1B stage keeps
  if (c.model.type == "gpt") {
    const auto& m = c.model;
    const double V = static_cast<double>(m.vocab_size), Tc = static_cast<double>(m.context_length);
    const double T = c.train.seq_len > 0 ? static_cast<double>(c.train.seq_len) : Tc;
    const double L = static_cast<double>(m.n_layer), H = static_cast<double>(m.n_head);
    const double C = static_cast<double>(m.n_embd);
    // Per block: qkv (C + 2 Ckv) x C (Ckv = C but under grouped-query
    // attention), the output projection C x C, the MLP 2 (gelu) or 3 (swiglu)
    // C x F matrices, their biases (model.bias), two norms (C, and C of bias
    // for a LayerNorm with biases). wpe only for learned positions.
    const double F = static_cast<double>(m.ffn_width()), mats = m.swiglu() ? 3 : 2;
    const double Ckv = H > 0 ? C / H * static_cast<double>(m.kv_heads()) : C, W = C + 2 * Ckv;
    const double bias = m.bias ? 1 : 0, norm = m.bias && !m.rms_norm() ? 2 : 1;  // a norm's parameters per feature
    const double block = W * C + C * C + mats * C * F + bias * (W + C + (mats - 1) * F + C) + 2 * norm * C;
    f.params = V * C * (m.tie_embeddings ? 1 : 2) + (m.rope() ? 0 : Tc * C) + L * block + norm * C;
    // Per layer and sample: ~16 C floats per token kept for backward, and the
    // attention scores and probabilities (2 H T per token). (Grouped-query
    // attention keeps narrower K and V: a little less, counted as multi-head's.)
    const double per_layer = B * T * (16 * C + 2 * H * T) * 4;
    const double act = c.train.precision == "bf16" ? 2 : 4;
    f.logits_bytes = B * T * V * act * (tp > 1 ? 2 : 1) / tp;
    f.act_bytes = per_layer * L / (tp * pp) * in_flight + f.logits_bytes;
  } else {
    const auto& m = c.model;
    const double S = static_cast<double>(m.image_size), cin = static_cast<double>(m.in_channels);
    double prev = static_cast<double>(m.stem_channels), side = m.stem_pool == "max" ? S / 2 : S;
    f.params = 9 * cin * prev + 4 * prev;
    double acts = B * S * S * prev * 4;  // stem: conv, norm, relu outputs
    for (size_t i = 0; i < m.channels.size() && i < m.blocks.size(); ++i) {
      const double ch = static_cast<double>(m.channels[i]), n = static_cast<double>(m.blocks[i]);
      if (i > 0) side = std::ceil(side / 2);
      f.params += 9 * prev * ch + (n * 2 - 1) * 9 * ch * ch + prev * ch + 8 * ch * n;
      acts += B * side * side * ch * 8 * n;  // two conv + norm + relu per block
      prev = ch;
    }
    f.params += prev * static_cast<double>(m.num_classes) + static_cast<double>(m.num_classes);
    f.act_bytes = acts * 4 / pp * in_flight;
  }
  const double slots = c.optim.name == "sgd" ? 1 : 2;
  const double state = c.parallel.zero ? slots / dp : slots;
  f.state_bytes = f.params / (tp * pp) * 4 * (2 + state);
  return f;
}

}  // namespace dtrain::config
