// The layer interface. No autograd: every layer writes its own forward and
// backward, owns the activation buffers it needs (allocated once by plan(),
// never in a step), accumulates its parameter gradients (+=, so micro-batches
// accumulate), and reports its own cost so that the planner, the profiler and
// MFU all read one source of truth.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/exec.h"
#include "core/tensor.h"
#include "model/arena.h"
#include "model/param.h"
#include "ops/cnn.h"
#include "ops/ops.h"

namespace dtrain {

// What a layer costs for one input of a given shape.
struct Cost {
  int64_t params = 0;      // trainable parameter elements owned by the layer
  double fwd_flops = 0;    // floating-point operations of forward
  double bwd_flops = 0;    // of backward (input and parameter gradients)
  // Activation bytes the layer holds per micro-batch in flight: what forward
  // keeps for backward (inputs counted by the layer that reads them), and
  // outputs that no later layer counts as its input.
  int64_t act_bytes = 0;
  // Bytes of the layer's work buffers: input gradients and scratch, used
  // only while its own forward or backward runs, so every GPT block shares
  // one set (see Layer::work_buffer); each micro-batch copy has its own.
  int64_t work_bytes = 0;
  // The part of act_bytes that selective recomputation remakes in backward
  // (the attention probabilities, the GELU output): every block shares one copy.
  int64_t recompute_bytes = 0;
  // Tensor-parallel all-reduces the layer issues (none without tp): how many,
  // and their payload bytes, in forward and in backward. Under sequence
  // parallelism an all-gather or reduce-scatter of N bytes counts as half an
  // all-reduce of N bytes: half a call and N/2 bytes (its ring takes t - 1
  // steps where an all-reduce's takes 2(t - 1), and moves half the bytes).
  double tp_fwd_calls = 0, tp_bwd_calls = 0;
  int64_t tp_fwd_bytes = 0, tp_bwd_bytes = 0;
  // Besides those, what a backward gathers again that its forward gathered
  // (sequence parallelism's product inputs), unless it runs under full
  // recomputation, whose re-run forward gathers them just before: counted
  // apart, whatever the mode, for the consumer to add where it applies.
  double tp_regather_calls = 0;
  int64_t tp_regather_bytes = 0;
  // Bytes of the model-wide slots the layer takes from its arena, used by
  // every layer only while its own forward or backward runs (sequence
  // parallelism's gathered gradients, reduced slices and packed scratch,
  // SeqParallel::shared): one set for all the layers and micro-batch copies
  // sharing the arena, so costs merge it by the largest (each layer's slots
  // are a subset of a block's, the same sizes).
  int64_t shared_bytes = 0;

  Cost& operator+=(const Cost& o) {
    params += o.params;
    fwd_flops += o.fwd_flops;
    bwd_flops += o.bwd_flops;
    act_bytes += o.act_bytes;
    work_bytes += o.work_bytes;
    recompute_bytes += o.recompute_bytes;
    tp_fwd_calls += o.tp_fwd_calls;
    tp_bwd_calls += o.tp_bwd_calls;
    tp_fwd_bytes += o.tp_fwd_bytes;
    tp_bwd_bytes += o.tp_bwd_bytes;
    tp_regather_calls += o.tp_regather_calls;
    tp_regather_bytes += o.tp_regather_bytes;
    shared_bytes = std::max(shared_bytes, o.shared_bytes);
    return *this;
  }
};

// Per-micro-batch context handed to every layer.
struct Ctx {
  bool training = true;
  uint64_t seed = 0;          // run seed (dropout masks are keyed by it)
  int64_t step = 0;           // optimizer step
  int64_t sample_offset = 0;  // global index of the micro-batch's first sample
  // Backward only: this micro-batch's gradients are the last to accumulate
  // before they leave (the chunk's last backward of the step; every backward
  // under ZeRO-2). Sequence-parallel layer norms then all-reduce
  // their (replicated) parameters' gradients over tp: each rank's are sums
  // over its slice of the sequence.
  bool grads_final = false;
};

class Layer {
 public:
  explicit Layer(std::string name) : name_(std::move(name)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const std::string& name() const { return name_; }

  // Output shape for an input of shape `in`.
  virtual Shape output_shape(const Shape& in) const = 0;
  // Allocates activation buffers for inputs of at most shape `in` (leading
  // dimension = largest batch) and makes the plans of its stateful ops.
  // Called once, after the parameters are allocated. `act` is the dtype of
  // floating activations; `ex` where and how the layer's ops run (it must
  // outlive the layer's use: forward and backward run their ops on it).
  virtual void plan(const Shape& in, DType act, const Exec& ex) = 0;
  // Forward on x (leading dimension <= the planned one). The returned tensor
  // is a view of a buffer the layer owns, valid until its next forward.
  virtual Tensor forward(const Tensor& x, const Ctx& ctx) = 0;
  // Given dL/dy for the last forward, accumulates parameter gradients and
  // returns dL/dx (undefined for integer inputs such as token ids).
  virtual Tensor backward(const Tensor& dy, const Ctx& ctx) = 0;
  // Cost for an input of shape `in`.
  virtual Cost cost(const Shape& in) const = 0;
  // Parameters this layer reads that another layer declared (the GPT head's
  // tied token embedding): ZeRO-3 gathers them for this layer's turn too.
  virtual std::vector<Param*> borrowed_params() const { return {}; }
  // The convolutions this layer (with its parts) runs on an input of shape
  // `in`, appended to `out` by name: what the cuDNN graph checks walk.
  virtual void list_convolutions(const Shape& in, std::vector<std::pair<std::string, ops::ConvGeom>>& out) const {}

  // Before plan(): activation recomputation, whose shared buffers come from
  // `arena` (see model/arena.h). Layers that recompute nothing ignore it.
  virtual void set_recompute(Recompute mode, BufferArena* arena) {}
  // Before plan(): take buffers from `arena` under `role` (the same buffers
  // for every layer given the same role): every buffer (Sharing::all, full
  // recomputation), or only the work buffers, the input gradients and
  // scratch that live only while this layer's forward or backward runs
  // (Sharing::work, every GPT block in any mode). Composite layers pass it
  // on to their parts as role + "." + part.
  enum class Sharing : uint8_t { work, all };
  virtual void share_buffers(BufferArena* arena, const std::string& role, Sharing what = Sharing::all) {
    arena_ = arena;
    role_ = role;
    share_all_ = what == Sharing::all;
  }
  // After share_buffers: whether forward's output lies in the arena (every
  // buffer shared), and whether backward's input gradient does (any sharing).
  bool output_in_arena() const { return arena_ && share_all_; }
  bool input_grad_in_arena() const { return arena_ != nullptr; }

 protected:
  // The Exec of the last plan(): every op of forward and backward runs on it.
  // (and the activations' dtype, which the cost's activation bytes use).
  void bind(const Exec& ex, DType act = DType::f32) {
    ex_ = &ex;
    act_ = act;
  }
  const Exec& ex() const { return *ex_; }
  // The planned activation dtype (f32 before plan()).
  DType act() const { return act_; }
  // Bytes of one activation element and of one statistic (the compute type)
  // in the planned dtype: fp32 (4, 4) before plan() and in fp32, bf16 (2, 4).
  int64_t act_size() const { return static_cast<int64_t>(dtype_size(act_)); }
  int64_t stat_size() const { return static_cast<int64_t>(dtype_size(ops::compute_dtype(act_))); }
  // A buffer for plan(): the layer's own, or its role's slot in the arena.
  Tensor buffer(const char* what, const Shape& shape, DType dtype, const Exec& ex) const {
    if (!arena_ || !share_all_) return Tensor::empty(shape, dtype, ex.device);
    return arena_->get(role_ + "." + what, shape, dtype, ex.device);
  }
  // A work buffer (an input gradient, scratch): its role's slot whenever the
  // layer shares buffers at all. Counted in Cost::work_bytes.
  Tensor work_buffer(const char* what, const Shape& shape, DType dtype, const Exec& ex) const {
    if (!arena_) return Tensor::empty(shape, dtype, ex.device);
    return arena_->get(role_ + "." + what, shape, dtype, ex.device);
  }

 private:
  std::string name_;
  const Exec* ex_ = &Exec::cpu();
  DType act_ = DType::f32;
  BufferArena* arena_ = nullptr;
  std::string role_;
  bool share_all_ = true;
};

// Loss statistics over the forwards since they were last read.
struct LossStats {
  double loss = 0;       // mean loss: of the one micro-batch, or the mean of micro-batches' means
  int64_t count = 0;     // items (tokens or images) in all of them
  int64_t correct = 0;   // items whose argmax equals the target
  double mean_sum = 0;      // sum of the micro-batches' mean losses
  double weighted_sum = 0;  // sum of mean * items (evaluation's item-weighted total)
  int64_t batches = 0;      // forwards counted
};

// The loss at the end of a model: takes logits and integer targets.
class Loss {
 public:
  virtual ~Loss() = default;
  virtual void plan(const Shape& logits, DType act, const Exec& ex) = 0;
  // Forward over one micro-batch: the statistics accumulate where the loss
  // runs (on the device) until take_stats() reads them.
  virtual void accumulate(const Tensor& logits, const Tensor& targets) = 0;
  // dL/dlogits of (scale * mean loss) for the last forward.
  virtual Tensor backward(double scale) = 0;
  virtual Cost cost(const Shape& logits) const = 0;

  // The statistics since the last read (one device-to-host copy), then reset.
  LossStats take_stats() {
    const ops::LossTotals t = ops::read_and_reset(ex(), stats_);
    LossStats s;
    s.loss = t.batches ? t.mean_sum / static_cast<double>(t.batches) : 0.0;
    s.count = t.count;
    s.correct = t.correct;
    s.mean_sum = t.mean_sum;
    s.weighted_sum = t.weighted_sum;
    s.batches = t.batches;
    return s;
  }
  // accumulate() then take_stats(): one micro-batch's statistics.
  LossStats forward(const Tensor& logits, const Tensor& targets) {
    accumulate(logits, targets);
    return take_stats();
  }

 protected:
  void bind(const Exec& ex, DType act = DType::f32) {
    ex_ = &ex;
    act_ = act;
    stats_ = ops::make_loss_accum(ex);
  }
  const Exec& ex() const { return *ex_; }
  int64_t act_size() const { return static_cast<int64_t>(dtype_size(act_)); }
  int64_t stat_size() const { return static_cast<int64_t>(dtype_size(ops::compute_dtype(act_))); }
  DType act_ = DType::f32;
  ops::LossAccum stats_;

 private:
  const Exec* ex_ = &Exec::cpu();
};

}  // namespace dtrain
