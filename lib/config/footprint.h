// A rough memory footprint of one rank of a resolved config, computed in
// double precision from the config values alone (so it cannot overflow, and
// needs no model code): parameters, gradients and optimizer state, the
// activations kept for backward, the logits. Validation refuses configs whose
// footprint is absurd (kMaxRankBytes): every size derived from user input
// further on (element counts, byte counts) then fits comfortably in int64,
// so no layer, loader or checkpoint computes a size that wraps. It is no
// estimate of what a run allocates (it keeps every activation in fp32, with
// no recomputation or sharding): `dtrain run` checks the memory with the cost
// model's count for the layout (parallel/auto_layout.h, fit_problem), and
// with this only where the planner cannot place the layout.
#pragma once

#include <cstdint>
#include <string>

#include "config/config.h"
#include "core/format_bytes.h"

namespace dtrain::config {

// 2^56 bytes (64 PiB) on one rank: above any real plan, even one `dtrain
// plan` reads on one process before splitting it (GPT-1T with its whole
// global batch of 3072 sequences on one rank is ~3 PiB), and far below where
// int64 element counts would wrap (2^61 floats).
inline constexpr double kMaxRankBytes = 72057594037927936.0;

// Micro-batches per optimizer step on one rank (train.grad_accum, given or
// derived): 2^20, beyond any real plan (GPT-3's batch of 1536 sequences at one
// per micro-batch is 1536) and far from int, which the pipeline schedule counts
// them in, and from the memory its list of operations (24 bytes each) takes.
inline constexpr int64_t kMaxGradAccum = int64_t{1} << 20;

struct Footprint {
  double params = 0;       // parameter elements (whole model)
  double state_bytes = 0;  // weights + gradients + optimizer state on one rank
  double act_bytes = 0;    // activations and logits kept on one rank
  // Of act_bytes (GPT): the last stage's (rows, vocabulary) buffers, as the
  // model allocates them: the logits, over which the loss writes dL/dlogits
  // (tp = 1); with tp the logits' and the vocabulary-parallel loss's
  // probabilities' (rows, vocabulary / tp), the gradient written over the
  // latter. In the activations' dtype (train.precision).
  double logits_bytes = 0;
  double total() const { return state_bytes + act_bytes; }
};

// Of a config whose model, batch and layout keys are valid.
Footprint footprint(const Config& c);

// format_bytes ("3.2 TiB" and the like) is dtrain::format_bytes (core/format_bytes.h).
using dtrain::format_bytes;

}  // namespace dtrain::config
