// Every matrix product the shipped GPT and CNN configs plan, listed from the
// layers' plan() (model/linear.cpp, lm_head.cpp, attention.cpp): three per
// Linear (forward, input gradient, weight gradient), the tied lm head's three,
// and the attention's batched per-head products, for tp = 1, 2, 4 where the
// config divides. Shared by the host tests of the cuBLASLt mapping and
// descriptors; gemm_spec_test checks the list against the models' own FLOP
// counts (Model::cost), so a layer that changes its products shows up there.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "config/config.h"
#include "kernels/cuda/gemm_spec.h"

namespace dtrain::test {

struct ModelGemm {
  std::string what;         // "gpt2-kjv.toml tp2 blocks.attn.qkv wgrad"
  cuda::RowGemm g;
  bool wgrad = false;       // accumulates into the fp32 gradient (bf16 x bf16 -> f32 under bf16)
  bool scores = false;      // attention scores: fp32 output under bf16
  bool forward = false;     // a forward product (for the FLOP cross-check)
  // The epilogue the layer plans (model/linear.cpp, mlp.cpp): the bias on a
  // forward product unless row-parallel, GELU after mlp.fc, GELU's derivative
  // in mlp.proj's input gradient (fused on a GPU in bf16: ops::fused_epilogue;
// none around a SwiGLU MLP),
  // the bias gradient in a biased Linear's weight gradient (fp32 and bf16).
  cuda::LtEpilogue epilogue = cuda::LtEpilogue::none;
};

inline std::vector<std::string> shipped_configs() {
  std::vector<std::string> out;
  for (const char* dir : {"configs", "configs/bench"})
    for (const auto& e : std::filesystem::directory_iterator(std::string(DTRAIN_SOURCE_DIR) + "/" + dir))
      if (e.path().extension() == ".toml") out.push_back(e.path().string());
  return out;
}

// y (rows, out) = x W^T; dx (rows, in) = dy W; dW (out, in) += dy^T x.
// `bias`: the Linear has one (its gradient fused into the weight gradient's).
inline void add_linear(std::vector<ModelGemm>& v, const std::string& what, int64_t rows, int64_t in, int64_t out,
                       bool bias, cuda::LtEpilogue fwd = cuda::LtEpilogue::none,
                       cuda::LtEpilogue dgrad = cuda::LtEpilogue::none) {
  v.push_back({what + " fwd", cuda::contiguous_row_gemm(false, true, rows, out, in), false, false, true, fwd});
  v.push_back({what + " dgrad", cuda::contiguous_row_gemm(false, false, rows, in, out), false, false, false, dgrad});
  v.push_back({what + " wgrad", cuda::contiguous_row_gemm(true, false, out, in, rows), true, false, false,
               bias ? cuda::LtEpilogue::bgradb : cuda::LtEpilogue::none});
}

inline cuda::RowGemm batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t batch) {
  cuda::RowGemm g = cuda::contiguous_row_gemm(ta, tb, m, n, k);
  g.batch = batch;
  g.stride_a = m * k;
  g.stride_b = k * n;
  g.stride_c = m * n;
  return g;
}

// The products of one config at tensor-parallel degree t (empty when t does not divide it).
inline std::vector<ModelGemm> config_gemms(const Config& c, const std::string& name, int64_t t) {
  std::vector<ModelGemm> v;
  const ModelConfig& m = c.model;
  const std::string tag = name + " tp" + std::to_string(t);
  if (m.classifier()) {
    if (t != 1) return v;
    add_linear(v, tag + " head.fc", c.train.micro_batch, m.channels.back(), m.num_classes, true, cuda::LtEpilogue::bias);
    return v;
  }
  const int64_t C = m.n_embd, nh = m.n_head, V = m.vocab_size;
  const int64_t F = m.ffn_width();  // the MLP's hidden width (GPT-2: 4C)
  const int64_t W = C + 2 * (C / nh) * m.kv_heads();  // qkv's rows: q, and k and v of the key/value heads
  if (nh % t || m.kv_heads() % t || C % t || V % t || F % t) return v;
  const int64_t T = train_seq_len(c), B = c.train.micro_batch, rows = B * T;
  using E = cuda::LtEpilogue;
  const E bias = m.bias ? E::bias : E::none;
  const E row_bias = t == 1 ? bias : E::none;  // row-parallel: the bias after the all-reduce
  add_linear(v, tag + " attn.qkv", rows, C, W / t, m.bias, bias);
  add_linear(v, tag + " attn.proj", rows, C / t, C, m.bias, row_bias);
  if (m.swiglu()) {  // the gate and up rows in one product; SwiGLU its own kernel, no epilogue
    add_linear(v, tag + " mlp.fc", rows, C, 2 * F / t, m.bias, bias);
    add_linear(v, tag + " mlp.proj", rows, F / t, C, m.bias, row_bias);
  } else {
    add_linear(v, tag + " mlp.fc", rows, C, F / t, m.bias, m.bias ? E::gelu_aux_bias : E::gelu_aux);
    add_linear(v, tag + " mlp.proj", rows, F / t, C, m.bias, row_bias, E::dgelu);
  }
  add_linear(v, tag + " lm_head", rows, C, V / t, false);
  const int64_t hs = C / nh, bh = B * nh / t;
  v.push_back({tag + " attn scores", batched(false, true, T, T, hs, bh), false, true});
  v.push_back({tag + " attn P V", batched(false, false, T, hs, T, bh)});
  // dV = P^T dO and dK = dS^T Q per key/value head, over the group's stacked query heads.
  const int64_t group = nh / m.kv_heads();
  v.push_back({tag + " attn P^T dO", batched(true, false, T, hs, group * T, B * m.kv_heads() / t)});
  return v;
}

}  // namespace dtrain::test
