// The model as the planner sees it: per top-level layer, what one sample
// costs on one tensor-parallel rank (parameters, FLOPs, activation bytes,
// tp all-reduces, bytes at its output), read from the layers' own Cost through
// describe_model, which declares parameters without allocating them. Every
// Cost the layers report is linear in the batch, so one description at batch
// 1 per tp degree serves every micro-batch size; a stage profile sums a
// pipeline stage's layers as the trainer cuts them (partition_layers over
// forward + backward FLOPs, the loss counted with the last layer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "parallel/hardware.h"  // Kernels

namespace dtrain {

// A group of matrix products of one shape, per sample and tp rank, for the
// efficiency curve (Hardware::gemm_efficiency): `rows` is the dimension that
// grows with the micro-batch (tokens per sample; 0 = none, e.g. a batched
// per-head product), `dim` the smaller of the other two.
struct Gemm {
  double fwd_flops = 0, bwd_flops = 0;
  double rows = 0, dim = 0;
  // The per-head attention products under a causal mask: a fused (flash-style)
  // kernel skips the tiles above the diagonal, so it does about half of
  // these FLOPs; a materialising one computes every score.
  bool causal = false;
};

// One top-level layer, one sample, one tp rank. Bytes are counted as the
// layers count them: 4 per element (the cost model scales them for bf16).
struct LayerProfile {
  std::string name;
  double params = 0;     // this rank's parameter elements
  double fwd_flops = 0;
  double bwd_flops = 0;
  double act_bytes = 0;  // kept from forward for backward
  double work_bytes = 0; // input gradients and scratch while its backward runs (blocks share one set)
  // The part of its work buffers that does not grow with the batch (a layer
  // norm's and the CPU attention's scratch): per micro-batch, not per sample.
  double work_fixed_bytes = 0;
  // Of the same, what is held in fp32 whatever the precision (the attention's
  // scratch: this CPU's kernels' per-thread buffers, or the CUDA backend's
  // score chunk), which bf16 does not halve; not in work_fixed_bytes.
  double stat_fixed_bytes = 0;
  double in_bytes = 0;   // the layer's input (what recomputation keeps)
  double out_bytes = 0;  // its output (what a pipeline stage boundary sends)
  double tp_fwd_calls = 0, tp_bwd_calls = 0;
  double tp_fwd_bytes = 0, tp_bwd_bytes = 0;
  // Besides tp_bwd: the backward's second all-gathers, where the runtime
  // makes them (Cost::tp_regather_calls).
  double tp_regather_calls = 0, tp_regather_bytes = 0;
  double shared_bytes = 0;  // the model-wide slots it uses (Cost::shared_bytes: one set per stage)
  // The layer's FLOPs split by matrix shape (they sum to fwd_flops, bwd_flops).
  std::vector<Gemm> gemms;
  // Memory-bound work (layer norms, GELU, residual adds, dropout, the
  // embedding gather, cross-entropy): bytes read + written per sample.
  double mem_fwd = 0, mem_bwd = 0;
  // Attention scores: what a materialising attention keeps (part of
  // act_bytes) and its softmax traffic; a fused attention keeps and moves none.
  double score_bytes = 0, score_mem_fwd = 0, score_mem_bwd = 0;
  // Selective recomputation: the part of act_bytes it remakes in the
  // backward (Cost::recompute_bytes), and the work of remaking it.
  double recompute_bytes = 0;
  double selective_flops = 0, selective_dim = 0, selective_mem = 0;
  bool block = false;  // a transformer block (its activations count in the recomputation modes)
};

struct ModelProfile {
  std::string kind;        // "gpt" | "cnn"
  int tp = 1;
  bool sequence_parallel = false;
  bool dropout = false;    // gpt: model.dropout > 0 (the embedding's dropout keeps an output of its own)
  int64_t seq_len = 0;     // gpt; 0 for the cnn
  int64_t items_per_sample = 1;  // tokens per sequence, or 1 image
  std::vector<LayerProfile> layers;  // top-level layers; the loss folded into the last
  // Parameters the last pipeline stage adds when it does not hold the first
  // layer: the GPT's copy of the tied token embedding (its gradient is summed
  // with the first stage's after the backward).
  double tied_params = 0;
  // Whole-model parameters and forward + backward FLOPs per sample (all tp
  // ranks together): what MFU divides by.
  double total_params = 0;
  double model_flops_per_sample = 0;
};

// Describes the model for tensor-parallel degree `tp` (the layers see a
// stand-in group of that size; nothing is allocated or communicated). Throws
// ConfigError when the model cannot be split that way (heads or vocabulary
// not divisible by tp).
// With `sequence_parallel` (GPT, tp > 1) the layers are described as they
// run sequence-parallel (Korthikanti et al. 2022). `kernels`: whose
// memory-bound kernels run the GPT's norms, dropouts, residuals, biases, GELU,
// softmax and loss (the bytes per token each set moves: docs/planner.md).
ModelProfile profile_model(const ModelConfig& cfg, int64_t seq_len, int tp, bool sequence_parallel = false,
                           Kernels kernels = Kernels::per_op);

// A pipeline stage's layers summed, per sample.
struct StageProfile {
  int64_t first_layer = 0, last_layer = 0;  // [first, last)
  double params = 0;
  double fwd_flops = 0, bwd_flops = 0;
  double act_bytes = 0;
  double max_layer_act_bytes = 0;  // the largest one layer keeps (recomputation's working set)
  double max_layer_work_bytes = 0; // the largest layer's work buffers (one set per micro-batch in flight)
  double max_block_work_fixed_bytes = 0;  // the largest batch-independent part of one block's (the shared set)
  double max_block_stat_fixed_bytes = 0;  // of it, the fp32 part (LayerProfile::stat_fixed_bytes)
  double own_work_fixed_bytes = 0;        // the layers other than blocks': theirs summed (each its own)
  double max_layer_params = 0;     // the largest layer's parameters (ZeRO-2's gradient window)
  double in_bytes = 0;             // sum of the layers' inputs (recomputation's checkpoints)
  double out_bytes = 0;            // the stage's output, sent to the next stage
  double tp_fwd_calls = 0, tp_bwd_calls = 0;
  double tp_fwd_bytes = 0, tp_bwd_bytes = 0;
  double tp_regather_calls = 0, tp_regather_bytes = 0;  // besides tp_bwd (Cost::tp_regather_calls)
  double shared_bytes = 0;         // the largest of the layers' model-wide slots (one set per stage)
  bool holds_tied_copy = false;    // last stage, without the first layer, of a model with tied_params
  std::vector<Gemm> gemms;         // the layers' matrix products, merged by shape
  double mem_fwd = 0, mem_bwd = 0; // memory-bound bytes per sample
  double score_bytes = 0, score_mem_fwd = 0, score_mem_bwd = 0;
  double max_layer_score_bytes = 0;      // of the layer with the most activations
  double recompute_bytes = 0;            // blocks' Cost::recompute_bytes summed
  double max_layer_recompute_bytes = 0;
  double block_act_bytes = 0;            // the blocks' act_bytes (recomputation's subject)
  double block_in_bytes = 0;             // the blocks' inputs (what full recomputation keeps)
  double max_block_act_bytes = 0, max_block_score_bytes = 0;
  double selective_flops = 0, selective_dim = 0, selective_mem = 0;
  // What full recomputation runs again: the transformer blocks' forward only
  // (lib/model/block.cpp; Megatron-LM's and DeepSpeed's activation
  // checkpointing also wrap the blocks alone), not the embedding, the head or
  // the loss.
  struct Blocks {
    int64_t count = 0;
    double params = 0;
    std::vector<Gemm> gemms;  // their products, merged by shape
    double mem_fwd = 0, score_mem_fwd = 0;
    double tp_fwd_calls = 0, tp_fwd_bytes = 0;
  } blocks;
  int64_t layers() const { return last_layer - first_layer; }
};

// The stages as the trainer cuts them for `pp` stages (partition_layers over
// forward + backward FLOPs). Throws ConfigError when pp exceeds the layers.
// With `uniform_blocks` (a model with transformer blocks), as Megatron-LM cuts
// them instead: every stage the same number of blocks, the embedding with the
// first and the final norm, head and loss with the last (throws ConfigError
// when pp does not divide the blocks).
// With `embeddings_as_blocks` too, the layers before the first block and
// those after the last count as one block each (pp must divide
// uniform_units(m, true)).
std::vector<StageProfile> profile_stages(const ModelProfile& m, int pp, bool uniform_blocks = false,
                                         bool embeddings_as_blocks = false);

// What a uniform cut divides among the chunks: the transformer blocks, and
// with `embeddings_as_blocks` one unit for the layers before the first block
// and one for those after the last, where there are any.
int64_t uniform_units(const ModelProfile& m, bool embeddings_as_blocks);

// The model's transformer blocks (LayerProfile::block); 0 for the CNN.
int64_t block_count(const ModelProfile& m);

}  // namespace dtrain
