#include "parallel/model_profile.h"

#include <algorithm>

#include "core/comm.h"
#include "core/error.h"
#include "kernels/cuda/attention_layout.h"
#include "ops/ops.h"
#include "model/model.h"
#include "parallel/pipeline.h"

namespace dtrain {

namespace {

// A group of `size` members seen from member 0 that never communicates: what
// the layers are built with when only their shapes and costs are wanted.
class DescribeOnlyGroup : public Communicator {
 public:
  explicit DescribeOnlyGroup(int size) : size_(size) {}
  int rank() const override { return 0; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  int world_rank(int r) const override { return r; }
  WorkHandle all_reduce(Tensor, ReduceOp) override { return refuse(); }
  WorkHandle reduce_scatter(Tensor, Tensor, ReduceOp, std::vector<int64_t>) override { return refuse(); }
  WorkHandle all_gather(Tensor, Tensor, std::vector<int64_t>) override { return refuse(); }
  WorkHandle broadcast(Tensor, int) override { return refuse(); }
  WorkHandle send(Tensor, int, int) override { return refuse(); }
  WorkHandle recv(Tensor, int, int) override { return refuse(); }
  WorkHandle barrier() override { return refuse(); }
  void set_timeout(double) override {}
  const CommStats& stats() const override { return stats_; }

 private:
  [[noreturn]] WorkHandle refuse() const {
    throw InternalError("a model described for planning was asked to communicate");
  }
  int size_;
  std::string name_ = "tp (described)";
  CommStats stats_;
};

// The GPT's matrix products and memory-bound passes, per sample and tp rank,
// from its shapes (h = n_embd, a heads of d = h / a, s tokens, t tp ranks, the
// norms, residuals and dropouts on s / q tokens, q = t when sequence
// parallel). Element counts; the caller scales by 4 bytes like the layers
// (a dropout mask is one byte: counted as half an element, exact in 16-bit).
// The memory-bound passes per token depend on the backend's kernels
// (docs/planner.md, "Memory-bound passes", derives each from the code):
// - per_op, every operation its own pass (the count `dtrain profile`
//   calibrates with): forward, each layer norm reads and writes h, each
//   residual add reads 2h and writes h, each dropout (model.dropout > 0) reads
//   h and writes h and a mask, GELU reads and writes 4h/t; backward, norms and
//   GELU read the input and the gradient and write one, the residual stream
//   adds two gradients, each dropout reads and writes h; a materialised
//   attention's softmax reads and writes a s/t scores per token forward, reads
//   two and writes one backward;
// - dtrain_cuda (lib/kernels/cuda, lib/model/block.cpp): forward, norms 2h
//   each, dropout fused with the residual add (reads 2h, writes h and the
//   mask; without dropout a plain add), the row-parallel products' biases
//   added after their all-reduce at tp > 1 (2h each), GELU and the column
//   biases in the products' epilogues (which also write GELU's input, 4h/t);
//   backward, each dropout reads the gradient and the mask and writes h, each
//   norm reads dy and x for the weight partials and dy, x and the residual
//   gradient for dx, writing dx (6h), the bias gradients read dy (2h
//   replicated, 7h/t split), GELU's derivative reads its input (4h/t) in the
//   product's epilogue; and the attention's head moves (lib/ops/cuda/blas.cpp,
//   attn_heads_from_rows / attn_heads_to_rows: each reads and writes h/t),
//   forward Q, K, V into heads and the output back (8h/t), backward Q, K, V
//   and the output's gradient into heads again and dQ, dK, dV back (14h/t;
//   under grouped-query attention K and V are read narrower and written as
//   wide, and dK and dV go back narrower, counted as multi-head's):
//   an H200 spent 16% of a GPT-2 124M step's kernel time in them
//   (tools/bench/results_gpu.md);
// - megatron_2021 (Megatron-LM, April 2021: megatron/model/transformer.py,
//   fused_bias_gelu.py, fused_softmax.py, fused_kernels/): forward, apex-style
//   layer norms 2h each, bias + dropout + residual one JIT kernel (reads 2h,
//   writes h and the mask), qkv's bias a separate add (F.linear on a 3-d
//   input: matmul, then add_; 6h/t), bias + GeLU one kernel (8h/t), the
//   context's permute(...).contiguous() copy (2h/t); backward, the fused
//   dropout's gradient (reads h and the mask, writes h) and its bias's
//   reduction (h), each layer norm two kernels (part-gradients of gamma and
//   beta read dy and x, grad-input reads both again and writes: 5h), autograd
//   summing the residual's gradient with the norm's (3h each), GeLU's
//   gradient (12h/t) and its bias's reduction (4h/t), the permute (2h/t), qkv's
//   bias gradient (3h/t); the causal softmax kernel reads the lower triangle
//   and writes every score (1.5 a s/t forward, 2 backward) and the attention
//   dropout (torch.nn.Dropout on the probabilities) reads and writes them
//   with a mask both ways (2.5 a s/t each);
// - megatron_core (Megatron-Core r0.8, July 2024, with Transformer Engine:
//   megatron/core/models/gpt/gpt_layer_specs.py, transformer/mlp.py,
//   fusions/fused_bias_dropout.py, fused_bias_gelu.py): forward as 2021's
//   replicated passes (TE's layer norm inside LayerNormColumnParallelLinear
//   reads and writes h; the projections' biases added by the bias + dropout
//   + residual kernel), split only bias + GeLU (8h/t: qkv's bias is in the
//   product's epilogue, attention reads and writes the (s, b, h) layout in
//   place); backward, TE's layer norm one kernel (reads dy and x, writes dx:
//   3h) and autograd's residual sum (3h) each, the biases' reductions (h
//   each), the dropouts' gradients (2.5h each), GeLU's gradient and its
//   bias's reduction (16h/t); a materialised attention's softmax as 2021's
//   (the fused one moves no scores).
struct BlockTraffic {
  double fwd_rep = 0, bwd_rep = 0;      // per token, on s / q tokens (times h)
  double fwd_split = 0, bwd_split = 0;  // per token, split over tp (times h / t)
  double scores_fwd = 0, scores_bwd = 0;  // per token (times a s / t), a materialising attention
};

BlockTraffic block_traffic(Kernels k, bool drop, int tp) {
  BlockTraffic b;
  switch (k) {
    case Kernels::per_op:
      b = {10.0 + (drop ? 6 : 0), 12.0 + (drop ? 4 : 0), 8, 12, 2, 3};
      break;
    case Kernels::dtrain_cuda:
      b = {10.0 + (drop ? 1 : 0) + (tp > 1 ? 4 : 0), 14.0 + (drop ? 5 : 0), 4 + 8, 11 + 14, 2, 3};
      break;
    case Kernels::megatron_2021:
      b = {10.0 + (drop ? 1 : 0), 18.0 + (drop ? 5 : 0), 16, 21, 1.5 + (drop ? 2.5 : 0), 2 + (drop ? 2.5 : 0)};
      break;
    case Kernels::megatron_core:
      b = {10.0 + (drop ? 1 : 0), 14.0 + (drop ? 5 : 0), 8, 16, 1.5 + (drop ? 2.5 : 0), 2 + (drop ? 2.5 : 0)};
      break;
  }
  return b;
}

void describe_gpt_layer(LayerProfile& p, const ModelConfig& cfg, int64_t seq_len, int tp, bool sp, Kernels kernels) {
  const double h = static_cast<double>(cfg.n_embd), s = static_cast<double>(seq_len), t = tp;
  const double a = static_cast<double>(cfg.n_head), d = h / a, q = sp ? t : 1.0;
  const double kv = static_cast<double>(cfg.kv_heads()), w = h + 2 * d * kv;  // qkv's width: q, and k, v of kv heads
  const double V = static_cast<double>(cfg.vocab_size);
  const bool drop = cfg.dropout > 0;
  auto gemm = [&](double flops, double rows, double dim) { p.gemms.push_back(Gemm{flops, 2 * flops, rows, dim}); };
  const double bytes = 4;
  const bool megatron = kernels == Kernels::megatron_2021 || kernels == Kernels::megatron_core;
  if (p.name.starts_with("blocks.")) {
    p.block = true;
    gemm(2 * s * h * w / t, s, std::min(h, w / t));           // qkv
    gemm(2 * 2 * (a / t) * s * s * d, 0, d);                  // Q K^T, P V per head
    p.gemms.back().causal = true;
    gemm(2 * s * (h / t) * h, s, h / t);                      // attention projection
    const double F = static_cast<double>(cfg.ffn_width());  // GPT-2: 4h
    if (cfg.swiglu()) {
      gemm(2 * s * h * 2 * F / t, s, std::min(h, 2 * F / t));  // fc: the gate and the up-projection
      gemm(2 * s * (F / t) * h, s, std::min(h, F / t));        // proj
    } else {
      gemm(2 * 2 * s * h * F / t, s, std::min(h, F / t));  // fc, proj
    }
    const BlockTraffic tr = block_traffic(kernels, drop, tp);
    // Sequence parallel in this trainer's (B, T, C) layout: the attention's
    // gather along the sequence and its scatter each copy the whole activation
    // between the packed (t, B, T/t, C) order and (B, T, C) (SeqParallel::
    // gather and scatter, transpose_blocks: reads and writes s h), twice
    // forward, twice backward. Megatron-LM's (T, B, C) gathers in place.
    const double sp_copies = sp && !megatron ? 4.0 : 0.0;
    p.mem_fwd = s * (tr.fwd_rep * h / q + tr.fwd_split * h / t + sp_copies * h) * bytes;
    p.mem_bwd = s * (tr.bwd_rep * h / q + tr.bwd_split * h / t + sp_copies * h) * bytes;
    p.score_mem_fwd = s * tr.scores_fwd * (a / t) * s * bytes;
    p.score_mem_bwd = s * tr.scores_bwd * (a / t) * s * bytes;
    p.score_bytes = (a / t) * s * s * bytes;
    // Selective recomputation remakes the probabilities (Q K^T and the
    // softmax) and GELU's output.
    p.selective_flops = 2 * (a / t) * s * s * d;
    p.selective_dim = d;
    p.selective_mem = p.score_mem_fwd + s * 8 * h / t * bytes;
    if (megatron) {
      // What Megatron-LM keeps for the backward, per block and sample, in
      // bytes at 16 bits (Korthikanti et al. 2022, section 4.1, counted from
      // the same code): replicated over tp (split under sequence parallelism)
      // the two layer norms' inputs and outputs (the qkv and fc1 inputs), 8sh,
      // and the two hidden dropouts' 1-byte masks, 2sh; split, Q, K and V
      // (6sh/t), the projection's input (2sh/t), GeLU's input and fc2's
      // (8sh/t each); a materialising attention also the softmax's output
      // (2as^2/t) and, with attention dropout, its mask and output (3as^2/t).
      // Selective recomputation (its core attention) drops the scores; full
      // recomputation keeps the block's input (2sh/q). Stored as the layers
      // count bytes, 4 per element: twice the 16-bit bytes.
      // (Q, K and V: 2 + 4 kv / a units under grouped-query attention.)
      const double kept = s * h * ((8.0 + (drop ? 2.0 : 0.0)) / q + (20.0 + 4.0 * kv / a) / t);
      const double scores = (a / t) * s * s * (drop ? 5.0 : 2.0);
      p.act_bytes = 2 * (kept + scores);
      p.score_bytes = 2 * scores;
      p.recompute_bytes = p.score_bytes;
      p.in_bytes = 2 * 2 * s * h / q;
      p.selective_mem = p.score_mem_fwd;
    }
  } else if (p.name == "embed") {
    p.mem_fwd = s * 3 * h / q * bytes;  // gather the token rows, add the positions
    p.mem_bwd = s * 3 * h / q * bytes;
  } else if (p.name == "ln_f") {
    // The layer norm's backward as in the blocks: 3h per_op, 5h apex's two
    // kernels, 6h dtrain's (no residual gradient to add here: 5h).
    p.mem_fwd = s * 2 * h / q * bytes;
    p.mem_bwd = s * (kernels == Kernels::per_op || kernels == Kernels::megatron_core ? 3 : 5) * h / q * bytes;
  } else if (p.name == "lm_head") {
    gemm(2 * s * h * V / t, s, std::min(h, V / t));
    // The loss: a softmax over the logits, reading and writing them each way.
    // Megatron-LM 2021 casts the 16-bit logits to fp32 (output.float(), 3 units
    // of 16-bit elements) and runs vocab_parallel_cross_entropy in place: max
    // (2), subtract (4), exp (4), sum (2), divide (4); backward, mul_ by the
    // loss's gradient (4) and the cast back (3).
    // Megatron-Core r0.8's vocab_parallel_cross_entropy is the same code
    // (cross_entropy_loss_fusion is off by default).
    p.mem_fwd = s * (megatron ? 19 : 2) * V / t * bytes;
    p.mem_bwd = s * (megatron ? 7 : 2) * V / t * bytes;
  }
  // The products as the layer counts them (biases, the loss's small terms):
  // the shapes' shares of the layer's own FLOPs.
  double fsum = 0;
  for (const Gemm& g : p.gemms) fsum += g.fwd_flops;
  if (fsum <= 0) {
    p.gemms = {Gemm{p.fwd_flops, p.bwd_flops, 0, 0}};
    return;
  }
  for (Gemm& g : p.gemms) {
    const double share = g.fwd_flops / fsum;
    g.fwd_flops = share * p.fwd_flops;
    g.bwd_flops = share * p.bwd_flops;
  }
}

LayerProfile to_profile(const std::string& name, const Cost& c) {
  LayerProfile p;
  p.name = name;
  p.params = static_cast<double>(c.params);
  p.fwd_flops = c.fwd_flops;
  p.bwd_flops = c.bwd_flops;
  p.act_bytes = static_cast<double>(c.act_bytes);
  p.work_bytes = static_cast<double>(c.work_bytes);
  p.tp_fwd_calls = c.tp_fwd_calls;
  p.tp_bwd_calls = c.tp_bwd_calls;
  p.tp_fwd_bytes = static_cast<double>(c.tp_fwd_bytes);
  p.tp_bwd_bytes = static_cast<double>(c.tp_bwd_bytes);
  p.tp_regather_calls = c.tp_regather_calls;
  p.tp_regather_bytes = static_cast<double>(c.tp_regather_bytes);
  p.shared_bytes = static_cast<double>(c.shared_bytes);
  p.recompute_bytes = static_cast<double>(c.recompute_bytes);
  return p;
}

}  // namespace

ModelProfile profile_model(const ModelConfig& cfg, int64_t seq_len, int tp, bool sequence_parallel,
                           Kernels kernels) {
  DescribeOnlyGroup group(tp);
  ModelParallel par;
  if (tp > 1) par.tp = &group;
  par.sequence_parallel = sequence_parallel && tp > 1;
  if (cfg.family() == ModelFamily::cnn && tp > 1)
    throw ConfigError(fmt::format("tp={}: tensor parallelism is not available for the CNN", tp));
  auto m = describe_model(cfg, seq_len, par);
  ModelProfile out;
  out.kind = cfg.type;
  out.tp = tp;
  out.sequence_parallel = par.sequence_parallel;
  out.dropout = cfg.family() == ModelFamily::gpt && cfg.dropout > 0;
  out.seq_len = cfg.token_model() ? seq_len : 0;
  out.items_per_sample = m->items_per_sample();

  // Work buffers per sample, and apart what a micro-batch's hold whatever its
  // size (scratch: a layer norm's chunks, the CPU kernels' per-thread column
  // and attention buffers, which stop growing once every thread has its
  // share): from the costs at two batches past that, so a scratch that
  // saturates counts in full, as at a large micro-batch.
  constexpr int64_t kBig = 1024;
  Shape s = m->input_shape(1), s1 = m->input_shape(kBig), s2 = m->input_shape(2 * kBig);
  const int in_elem_bytes = 4;  // token ids are int32, activations counted as fp32
  for (const auto& layer : m->layers) {
    const Cost big = layer->cost(s1), bigger = layer->cost(s2);
    LayerProfile p = to_profile(layer->name(), layer->cost(s));
    p.work_bytes = static_cast<double>(bigger.work_bytes - big.work_bytes) / kBig;
    p.work_fixed_bytes = static_cast<double>(2 * big.work_bytes - bigger.work_bytes);
    p.in_bytes = static_cast<double>(s.numel() * in_elem_bytes);
    s = layer->output_shape(s);
    s1 = layer->output_shape(s1);
    s2 = layer->output_shape(s2);
    p.out_bytes = static_cast<double>(s.numel() * 4);
    out.layers.push_back(p);
  }
  const bool gpt = cfg.family() == ModelFamily::gpt;
  if (m->loss) {  // the loss counts with the last layer, as the trainer partitions
    const Cost c = m->loss->cost(s);
    LayerProfile& last = out.layers.back();
    const LayerProfile loss = to_profile("loss", c);
    last.params += loss.params;
    last.fwd_flops += loss.fwd_flops;
    last.bwd_flops += loss.bwd_flops;
    last.act_bytes += loss.act_bytes;
    last.work_bytes += loss.work_bytes;
    last.tp_fwd_calls += loss.tp_fwd_calls;
    last.tp_bwd_calls += loss.tp_bwd_calls;
    last.tp_fwd_bytes += loss.tp_fwd_bytes;
    last.tp_bwd_bytes += loss.tp_bwd_bytes;
  }
  for (LayerProfile& p : out.layers) {
    if (gpt) {
      describe_gpt_layer(p, cfg, seq_len, tp, par.sequence_parallel, kernels);
    } else {
      p.gemms = {Gemm{p.fwd_flops, p.bwd_flops, 0, 0}};
    }
  }
  // The attention's scratch, which the blocks' costs count as this CPU's
  // kernels' (ops::attention_scratch: per-thread fp32 buffers, whatever the
  // batch), held apart as fp32 (LayerProfile::stat_fixed_bytes). On this
  // trainer's CUDA backend it is instead the head-major copies of Q, K, V, the
  // output and the three gradients, 7 B s h/t in the activation dtype, and
  // one chunk of fp32 score matrices of at most 128 MiB (at least one head's
  // s^2; lib/kernels/cuda/attention_layout.h), counted in full as at a large
  // micro-batch. The runtimes described from other code keep the CPU's count.
  if (gpt && (kernels == Kernels::per_op || kernels == Kernels::dtrain_cuda)) {
    const int64_t hs = cfg.n_embd / cfg.n_head;
    const ops::Heads local{cfg.n_head / tp, cfg.kv_heads() / tp};
    const Shape qkv{1, seq_len, (local.q + 2 * local.kv) * hs};
    const double cpu = static_cast<double>(ops::attention_scratch(Exec::cpu(), qkv, local, DType::f32)) * 4;
    const double T = static_cast<double>(seq_len), head = T * T * 4;
    const double chunk =
        std::max(1.0, std::floor(static_cast<double>(cuda::kAttnScoreBytes) / head)) * head;
    for (LayerProfile& p : out.layers) {
      if (!p.block) continue;
      p.work_fixed_bytes -= cpu;
      if (kernels == Kernels::dtrain_cuda) {
        p.work_bytes += 7 * T * static_cast<double>(local.q * hs) * 4;
        p.stat_fixed_bytes += chunk;
      } else {
        p.stat_fixed_bytes += cpu;
      }
    }
  }

  // Tied parameters (the GPT's head and wte): a stage holding the head but not
  // the embedding declares its own copy (see build_gpt).
  for (const auto& p : m->params.all())
    if (p->tied) out.tied_params += static_cast<double>(p->numel());

  // Whole-model figures from the unsplit description (replicated layer norms
  // and biases make tp x one rank's count slightly too large).
  const Cost whole = tp > 1 ? describe_model(cfg, seq_len)->cost(1) : m->cost(1);
  out.total_params = static_cast<double>(whole.params);
  out.model_flops_per_sample = whole.fwd_flops + whole.bwd_flops;
  return out;
}

int64_t block_count(const ModelProfile& m) {
  return std::count_if(m.layers.begin(), m.layers.end(), [](const LayerProfile& l) { return l.block; });
}

namespace {

// Adds a product to a list merged by shape.
void merge_gemm(std::vector<Gemm>& gemms, const Gemm& g) {
  auto same = std::find_if(gemms.begin(), gemms.end(),
                           [&](const Gemm& x) { return x.rows == g.rows && x.dim == g.dim && x.causal == g.causal; });
  if (same == gemms.end()) {
    gemms.push_back(g);
  } else {
    same->fwd_flops += g.fwd_flops;
    same->bwd_flops += g.bwd_flops;
  }
}

// Index of the first transformer block (the layers' count if none).
int64_t first_block(const ModelProfile& m) {
  return std::find_if(m.layers.begin(), m.layers.end(), [](const LayerProfile& l) { return l.block; }) -
         m.layers.begin();
}

}  // namespace

int64_t uniform_units(const ModelProfile& m, bool embeddings_as_blocks) {
  const int64_t blocks = block_count(m), first = first_block(m);
  if (!embeddings_as_blocks || blocks == 0) return blocks;
  return blocks + (first > 0 ? 1 : 0) + (first + blocks < static_cast<int64_t>(m.layers.size()) ? 1 : 0);
}

std::vector<StageProfile> profile_stages(const ModelProfile& m, int pp, bool uniform_blocks,
                                         bool embeddings_as_blocks) {
  std::vector<int64_t> b;
  const int64_t blocks = block_count(m);
  if (uniform_blocks && blocks > 0) {
    // As many blocks per chunk; the layers before the first block (the
    // embedding) ride with the first chunk, those after the last (the final
    // norm, the head and the loss) with the last one, or each counts as a
    // block of its own.
    const int64_t first = first_block(m), units = uniform_units(m, embeddings_as_blocks);
    const int64_t front = embeddings_as_blocks && first > 0 ? 1 : 0;  // the embedding is unit 0
    if (units % pp != 0)
      throw ConfigError(fmt::format("{} pipeline chunks do not divide the {} transformer blocks{}", pp, blocks,
                                    units > blocks ? fmt::format(" and the {} embedding units", units - blocks) : ""));
    // Unit u >= front is block u - front.
    b.push_back(0);
    for (int64_t k = 1; k < pp; ++k) b.push_back(first + k * (units / pp) - front);
    b.push_back(static_cast<int64_t>(m.layers.size()));
  } else {
    std::vector<double> costs;
    for (const LayerProfile& l : m.layers) costs.push_back(l.fwd_flops + l.bwd_flops);
    b = partition_layers(costs, pp);
  }
  std::vector<StageProfile> stages(pp);
  for (int s = 0; s < pp; ++s) {
    StageProfile& st = stages[s];
    st.first_layer = b[s];
    st.last_layer = b[s + 1];
    for (int64_t i = b[s]; i < b[s + 1]; ++i) {
      const LayerProfile& l = m.layers[i];
      st.params += l.params;
      st.fwd_flops += l.fwd_flops;
      st.bwd_flops += l.bwd_flops;
      st.act_bytes += l.act_bytes;
      st.max_layer_act_bytes = std::max(st.max_layer_act_bytes, l.act_bytes);
      st.max_layer_work_bytes = std::max(st.max_layer_work_bytes, l.work_bytes);
      if (l.block) {
        st.max_block_work_fixed_bytes = std::max(st.max_block_work_fixed_bytes, l.work_fixed_bytes);
        st.max_block_stat_fixed_bytes = std::max(st.max_block_stat_fixed_bytes, l.stat_fixed_bytes);
      } else
        st.own_work_fixed_bytes += l.work_fixed_bytes;
      st.max_layer_params = std::max(st.max_layer_params, l.params);
      st.in_bytes += l.in_bytes;
      st.tp_fwd_calls += l.tp_fwd_calls;
      st.tp_bwd_calls += l.tp_bwd_calls;
      st.tp_fwd_bytes += l.tp_fwd_bytes;
      st.tp_bwd_bytes += l.tp_bwd_bytes;
      st.tp_regather_calls += l.tp_regather_calls;
      st.tp_regather_bytes += l.tp_regather_bytes;
      st.shared_bytes = std::max(st.shared_bytes, l.shared_bytes);
      const std::vector<Gemm> flat{Gemm{l.fwd_flops, l.bwd_flops, 0, 0}};  // a layer described by hand
      for (const Gemm& g : l.gemms.empty() ? flat : l.gemms) {
        merge_gemm(st.gemms, g);
        if (l.block) merge_gemm(st.blocks.gemms, g);
      }
      st.mem_fwd += l.mem_fwd;
      st.mem_bwd += l.mem_bwd;
      st.score_bytes += l.score_bytes;
      st.score_mem_fwd += l.score_mem_fwd;
      st.score_mem_bwd += l.score_mem_bwd;
      if (l.act_bytes >= st.max_layer_act_bytes - 0.5) st.max_layer_score_bytes = l.score_bytes;
      st.recompute_bytes += l.recompute_bytes;
      st.max_layer_recompute_bytes = std::max(st.max_layer_recompute_bytes, l.recompute_bytes);
      if (l.block) {
        st.block_act_bytes += l.act_bytes;
        st.block_in_bytes += l.in_bytes;
        st.max_block_act_bytes = std::max(st.max_block_act_bytes, l.act_bytes);
        st.max_block_score_bytes = std::max(st.max_block_score_bytes, l.score_bytes);
        st.blocks.count += 1;
        st.blocks.params += l.params;
        st.blocks.mem_fwd += l.mem_fwd;
        st.blocks.score_mem_fwd += l.score_mem_fwd;
        st.blocks.tp_fwd_calls += l.tp_fwd_calls;
        st.blocks.tp_fwd_bytes += l.tp_fwd_bytes;
      }
      st.selective_flops += l.selective_flops;
      st.selective_dim = std::max(st.selective_dim, l.selective_dim);
      st.selective_mem += l.selective_mem;
    }
    st.out_bytes = m.layers[b[s + 1] - 1].out_bytes;
  }
  if (pp > 1 && m.tied_params > 0) {
    stages.back().holds_tied_copy = true;
    stages.back().params += m.tied_params;
  }
  return stages;
}

}  // namespace dtrain
