// The decoder of kv_decoder.h. Per block, for n new tokens at positions
// p0 .. p0 + n - 1 (p0 = length()):
//   h = ln1(x); qkv = h Wqkv^T + b; q, k turned (rotary positions);
//   keys/values[p0 ..] = k, v (n_kv_head heads: grouped-query attention
//   caches n_head / n_kv_head times fewer);
//   per query head (reading its group's key/value head): scores = q K^T / sqrt(hs) over positions 0 .. p0 + i (causal),
//   softmax, y = P V; x += y Wproj^T + b; h = ln2(x);
//   x += gelu(h Wfc^T + b) Wfc2^T + b  (SwiGLU: silu(gate) * up of h Wfc^T + b)
// then ln_f on the last row and its logits against the head's weight. The
// products go to cpu::gemm (OpenBLAS, or the AVX-512 kernel where selected),
// the norms and GELU to the training kernels; the softmax of n rows over at
// most context_length positions is a loop of its own.
#include "model/kv_decoder.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/rope.h"
#include "model/layernorm.h"
#include "model/model.h"

namespace dtrain {

namespace {

// y (n, out) = x (n, in) W^T + b, W (out, in) row-major.
void linear(const float* x, int64_t n, int64_t in, const float* w, const float* b, int64_t out, float* y) {
  cpu::gemm<float>(false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (b)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < out; ++j) y[r * out + j] += b[j];
}

}  // namespace

KvDecoder::KvDecoder(const ParamStore& params, const ModelConfig& cfg) : cfg_(cfg), rope_(rope_of(cfg)) {
  if (cfg.type != "gpt")
    throw ConfigError(fmt::format("model.type \"{}\": the key/value cache decodes GPTs", cfg.type));
  DTRAIN_CHECK(cfg.n_head > 0 && cfg.kv_heads() > 0 && cfg.n_head % cfg.kv_heads() == 0 && cfg.n_embd % cfg.n_head == 0,
               "key/value cache: {} heads over {} key/value heads of width {}", cfg.n_head, cfg.kv_heads(), cfg.n_embd);
  const int64_t C = cfg.n_embd, V = cfg.vocab_size, T = cfg.context_length, F = cfg.ffn_width();
  const int64_t F1 = cfg.swiglu() ? 2 * F : F;  // fc's outputs
  const int64_t W = C + 2 * kv_width();          // qkv's outputs
  auto get = [&](const std::string& name, const Shape& shape, bool optional = false) -> const float* {
    const Param* p = params.find(name);
    if (!p) {
      if (optional) return nullptr;
      throw InputError(fmt::format("the model has no parameter '{}'", name));
    }
    if (p->shape != shape || p->shard.full != shape || p->value.dtype() != DType::f32)
      throw InputError(fmt::format("parameter '{}' is {} {}, expected whole fp32 {}", name, p->shape.str(),
                                   dtype_name(p->value.dtype()), shape.str()));
    return p->value.data<float>();
  };
  wte_ = get("wte.weight", Shape{V, C});
  head_ = cfg.tie_embeddings ? wte_ : get("lm_head.weight", Shape{V, C});
  wpe_ = cfg.rope() ? nullptr : get("wpe.weight", Shape{T, C});
  lnf_w_ = get("ln_f.weight", Shape{C});
  lnf_b_ = get("ln_f.bias", Shape{C}, true);
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const std::string b = fmt::format("blocks.{}.", l);
    blocks_.push_back({get(b + "ln1.weight", Shape{C}), get(b + "ln1.bias", Shape{C}, true),
                       get(b + "attn.qkv.weight", Shape{W, C}), get(b + "attn.qkv.bias", Shape{W}, true),
                       get(b + "attn.proj.weight", Shape{C, C}), get(b + "attn.proj.bias", Shape{C}, true),
                       get(b + "ln2.weight", Shape{C}), get(b + "ln2.bias", Shape{C}, true),
                       get(b + "mlp.fc.weight", Shape{F1, C}), get(b + "mlp.fc.bias", Shape{F1}, true),
                       get(b + "mlp.proj.weight", Shape{C, F}), get(b + "mlp.proj.bias", Shape{C}, true)});
    keys_.emplace_back(static_cast<size_t>(T * kv_width()));
    values_.emplace_back(static_cast<size_t>(T * kv_width()));
  }
  logits_.resize(static_cast<size_t>(V));
}

void KvDecoder::norm(const float* x, int64_t n, const float* w, const float* b, float* y) {
  const float eps = static_cast<float>(LayerNorm::kEps);
  if (cfg_.rms_norm())
    cpu::rmsnorm_forward<float>(x, w, n, cfg_.n_embd, eps, y, rstd_.data());
  else
    cpu::layernorm_forward<float>(x, w, b, n, cfg_.n_embd, eps, y, mean_.data(), rstd_.data());
}

void KvDecoder::reserve(int64_t n) {
  if (n <= rows_) return;
  const int64_t C = cfg_.n_embd, T = cfg_.context_length;
  rows_ = n;
  x_.resize(n * C);
  h_.resize(n * C);
  qkv_.resize(n * (C + 2 * kv_width()));
  y_.resize(n * C);
  const int64_t F = cfg_.ffn_width();
  hidden_.resize(n * (cfg_.swiglu() ? 2 : 1) * F);
  act_.resize(cfg_.swiglu() ? n * F : 0);
  scores_.resize(n * T);
  mean_.resize(n);
  rstd_.resize(n);
}

const std::vector<float>& KvDecoder::append(std::span<const int32_t> tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size()), C = cfg_.n_embd, V = cfg_.vocab_size;
  const int64_t nh = cfg_.n_head, nkv = cfg_.kv_heads(), hs = C / nh, p0 = length_, end = p0 + n;
  const int64_t Ckv = kv_width(), W = C + 2 * Ckv, group = nh / nkv;
  DTRAIN_CHECK(n >= 1 && end <= cfg_.context_length, "append of {} tokens at {} of {} positions", n, p0,
               cfg_.context_length);
  reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = tokens[static_cast<size_t>(i)];
    DTRAIN_CHECK(t >= 0 && t < V, "token {} outside the vocabulary ({})", t, V);
    for (int64_t j = 0; j < C; ++j) x_[i * C + j] = wte_[t * C + j] + (wpe_ ? wpe_[(p0 + i) * C + j] : 0.0f);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int64_t F = cfg_.ffn_width();
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const BlockParams& b = blocks_[l];
    float *K = keys_[l].data(), *Vc = values_[l].data();
    norm(x_.data(), n, b.ln1_w, b.ln1_b, h_.data());
    linear(h_.data(), n, C, b.qkv_w, b.qkv_b, W, qkv_.data());
    if (cfg_.rope()) cpu::rope<float>(qkv_.data(), 1, n, C, nh, nkv, rope_, p0, false);
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(&qkv_[i * W + C], Ckv, K + (p0 + i) * Ckv);
      std::copy_n(&qkv_[i * W + C + Ckv], Ckv, Vc + (p0 + i) * Ckv);
    }
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / group;  // its key/value head
      // scores (n, end) = q_h (n, hs; rows W apart) K_g^T (hs, end; rows Ckv apart)
      cpu::gemm<float>(false, true, n, end, hs, scale, &qkv_[h * hs], W, K + g * hs, Ckv, 0.0f, scores_.data(), end);
      for (int64_t i = 0; i < n; ++i) {
        float* s = &scores_[i * end];
        const int64_t seen = p0 + i + 1;  // positions 0 .. p0 + i: causal
        const float top = *std::max_element(s, s + seen);
        float sum = 0;
        for (int64_t j = 0; j < seen; ++j) sum += (s[j] = std::exp(s[j] - top));
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < seen; ++j) s[j] *= inv;
        std::fill(s + seen, s + end, 0.0f);
      }
      // y_h (n, hs; rows C apart) = P (n, end) V_g (end, hs; rows Ckv apart)
      cpu::gemm<float>(false, false, n, hs, end, 1.0f, scores_.data(), end, Vc + g * hs, Ckv, 0.0f, &y_[h * hs], C);
    }
    linear(y_.data(), n, C, b.proj_w, b.proj_b, C, h_.data());
    for (int64_t k = 0; k < n * C; ++k) x_[k] += h_[k];
    norm(x_.data(), n, b.ln2_w, b.ln2_b, h_.data());
    const float* a = hidden_.data();  // the activation's output (n, F)
    if (cfg_.swiglu()) {
      linear(h_.data(), n, C, b.fc_w, b.fc_b, 2 * F, hidden_.data());
      cpu::swiglu_forward<float>(hidden_.data(), n, F, act_.data());
      a = act_.data();
    } else {
      linear(h_.data(), n, C, b.fc_w, b.fc_b, F, hidden_.data());
      cpu::gelu_forward<float>(hidden_.data(), n * F, hidden_.data());
    }
    linear(a, n, F, b.fc2_w, b.fc2_b, C, h_.data());
    for (int64_t k = 0; k < n * C; ++k) x_[k] += h_[k];
  }
  // The last position's logits: ln_f, then the head (V, C): wte or lm_head.weight.
  const float* last = &x_[(n - 1) * C];
  norm(last, 1, lnf_w_, lnf_b_, h_.data());
  cpu::gemm<float>(false, true, 1, V, C, 1.0f, h_.data(), C, head_, C, 0.0f, logits_.data(), V);
  length_ = end;
  return logits_;
}

}  // namespace dtrain
