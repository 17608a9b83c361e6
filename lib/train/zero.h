// ZeRO sharding over the data-parallel group (Rajbhandari et al. 2020), kept
// apart from the step loop: the trainer calls it at a few points (around each
// top-level layer's backward, after the backward, for the gradient norm and
// after the update) and it owns everything sharded.
//
// Data-parallel rank d owns one contiguous range of this stage's flat
// parameter buffer (multiples of 16 elements, the last short): the optimizer
// state of that range (ZeRO-1) and its reduced gradients, held in `grad_shard`
// (the optimizer reads them from there).
//   - ZeRO-1: the layers accumulate into the full gradient buffer as without
//     ZeRO; on the step's last backward, buckets of it are reduce-scattered
//     (not all-reduced) into the shard as the layers finish, overlapping the
//     rest of the backward. After the update the ranks all-gather the
//     updated parameters: in fp32 the masters, which the layers compute
//     with; under bf16 the updated bf16 copies, each rank keeping only the
//     fp32 masters of its range (as Megatron's distributed optimizer and
//     DeepSpeed do: 4 bytes a parameter become 4/dp, and the gather moves 2).
//     Checkpoints and imported weights (model.init_from) save and load each
//     rank's range of them (master_shard, shards_loaded): nothing gathered.
//   - ZeRO-2: no full gradient buffer. Each top-level layer's gradients go to
//     one of two transient windows (double buffering: layer i-1's backward
//     runs while layer i's window is reduce-scattered) and are reduce-
//     scattered into the shard as soon as that layer's backward ends, on
//     EVERY micro-batch (as DeepSpeed does). Why every micro-batch: with
//     grad_accum > 1, accumulating locally and scattering once needs the full
//     gradient buffer for the whole step, which is what ZeRO-2 removes; the
//     price is grad_accum reduce-scatters per step instead of one.
//     Tied parameters (the token embedding, written by the head's backward at
//     the start and the embedding's at the end of it) keep a full "resident"
//     gradient for the step, summed over the pipeline's embedding group and
//     then reduce-scattered over dp into the shard after the backward. Why
//     not per layer: the two stages of a pipeline's embedding group hold the
//     tensor at different flat offsets, so their dp pieces of it differ and
//     only the whole tensor can be summed between them.
//   - ZeRO-3 (fully sharded data parallel): ZeRO-2's gradients, and the
//     parameters sharded too. Each rank keeps only the fp32 masters of its
//     range (and under bf16 their bf16 copy: what the all-gathers send); the
//     flat master and compute buffers are freed. Before a top-level layer's
//     forward, and again before its backward, its parameters are all-gathered
//     in the compute dtype into one of two shared windows and its
//     Param::compute views pointed there; the gather of the
//     pass's next layer is started into the other window (MPI non-blocking)
//     so that it overlaps this layer's compute. A window is reused by the
//     next gather, so parameter memory falls as 1/dp plus two windows. A
//     layer's unit is every parameter it reads: its own, and the tied token
//     embedding for the head (gathered before the embedding's forward and
//     backward and the head's, like any other unit: no copy of it stays).
//     Window 0 fits the widest unit (the embedding's at GPT-2 sizes), window
//     1 the widest unit that reads no tied parameter, so that the embedding
//     costs one window, not two; a wide unit waits for window 0 (its gather
//     is not prefetched while the layer before it holds that window). A
//     window still holding a layer's current values is not gathered again
//     (the last layer's forward straight before its backward). Full
//     recomputation re-runs the forward inside the backward, on the
//     parameters gathered for it. Checkpoints and imported weights save and
//     load each rank's range of the masters (nothing gathered).
// With pipeline parallelism each stage has its own flat buffer: shards are
// over the dp group within each (tp, pp) position. Layers are numbered as in
// the owner's (slots[0]'s) list: under the interleaved schedule the owner
// holds every chunk's layers and the copies a subset.
#pragma once

#include <cstdint>
#include <vector>

#include "core/comm.h"
#include "model/model.h"
#include "optim/optimizer.h"

namespace dtrain {

class ZeroSharding {
 public:
  // stage: 1, 2 or 3; slots[0] owns the parameters, the others are pipeline
  // replicas sharing them (their gradient views are re-pointed too). embed:
  // the group of pipeline stages holding a tied parameter (nullptr: pp == 1).
  // broken (tests only): 1 offsets the reduce-scatter's input by one element,
  // 2 the all-gather's (ZeRO-3: the layers' parameter gathers), so that a
  // test can show the layout comparison catches it.
  // overlap: ZeRO-3 prefetches the next layer's parameters.
  ZeroSharding(int stage, std::vector<Model*> slots, Communicator& dp, Communicator* embed, double bucket_mb,
               int broken = 0, bool overlap = true);

  int stage() const { return stage_; }
  FlatRange range() const { return range_; }
  const std::vector<int64_t>& counts() const { return counts_; }
  // This rank's reduced gradients: flat elements [range.begin, range.end).
  Tensor& grad_shard() { return shard_; }
  // Bytes this rank holds for gradients: the shard, plus the full buffer
  // (ZeRO-1), or the resident tied gradients and the two windows (ZeRO-2, 3).
  double grad_bytes() const;
  // Bytes this rank holds for parameters (masters and compute copy): the
  // full buffers (ZeRO-1, 2; under bf16 the master shard and the whole
  // compute copy); ZeRO-3 the master shard, its compute copy
  // (bf16) and the two gather windows (every parameter, the tied embedding
  // included, held whole only in a window during its layers' turns).
  double param_bytes() const;
  // After the optimizer is built over master_shard() and compute_shard()
  // (ZeRO-3, and ZeRO-1/2 under bf16; undefined otherwise): frees the full
  // masters of every slot (ZeRO-3: and the full compute copy).
  void shard_params();
  Tensor& master_shard() { return master_; }
  Tensor& compute_shard() { return compute_shard_; }
  int64_t buckets() const { return static_cast<int64_t>(bounds_.size()) - 1; }
  // ZeRO-3: gathers a layer waited for in full at its turn (neither
  // prefetched nor still held), since construction.
  int64_t demand_gathers() const { return demand_gathers_; }

  // Start of a step: zeroes the shard (and the resident gradients).
  void begin_step();
  // ZeRO-3: before top-level layer i's forward: its parameters gathered into
  // place; `next` (-1: none) the layer that runs next (in this pass, or the
  // first of the step's next forward or backward), whose gather starts now.
  void before_forward(size_t layer, int64_t next);
  // Around top-level layer i's backward of micro-batch `micro` (`last`: the
  // step's last backward on this stage; `next`: ZeRO-3's prefetch, as above).
  void before_backward(size_t layer, bool last, int64_t next = -1);
  void after_backward(size_t layer, bool last, bool overlap);
  // After the step's backward: completes every reduction (and the tied
  // parameters'); returns the seconds spent waiting here.
  double finish();
  // Sum of squared reduced gradients in the shard (the rules of
  // grad_sum_squares: primary parameters, replicated ones only if `replicated`);
  // summed over dp here, over tp and pp by the caller.
  double grad_sum_squares(bool replicated);
  // After the update: all-gathers the updated parameters over dp (the
  // masters, or under bf16 their compute copy; ZeRO-3: nothing to gather,
  // the windows are stale).
  void gather_params();
  // Where the masters are sharded (ZeRO-3; ZeRO-1/2 under bf16): the full
  // masters back in every slot's Param::value (all-gathered over dp), until
  // release_full drops them again. Tests read the full parameters this way.
  void gather_full();
  void release_full();
  // Where the masters are sharded: a checkpoint load wrote master_shard()
  // (each rank its own range, nothing gathered). The compute copy of this
  // rank's range follows here; under ZeRO-1/2 the other ranks' ranges of the
  // whole bf16 copy are all-gathered by refresh(), which the trainer calls
  // before its next forward (a step or an evaluation): the load itself never
  // communicates, so a rank whose read fails leaves no collective half-joined.
  void shards_loaded();
  void refresh();

 private:
  struct Window {
    Tensor buf;  // the layer's gradients; after the reduce-scatter (in place) this rank's piece at its start
    int64_t lo = 0, hi = 0;  // flat range held
    WorkHandle pending;
  };
  std::vector<int64_t> pieces(int64_t lo, int64_t hi) const;  // elements of [lo, hi) in each rank's range
  void start_bucket(int64_t b);
  void land(Window& w);  // waits for w's reduce-scatter and adds its piece to the shard
  void point_grads(size_t layer, const Tensor& window, int64_t lo);

  int stage_;
  std::vector<Model*> slots_;
  ParamStore& ps_;
  Communicator& dp_;
  Communicator* embed_;
  int me_ = 0;
  int broken_ = 0;
  FlatRange range_;
  std::vector<int64_t> counts_, starts_;
  Tensor shard_;
  // ZeRO-1: buckets of the full gradient buffer (from the back).
  std::vector<int64_t> bounds_;
  int64_t next_ = 0;
  std::vector<WorkHandle> pending_;
  // ZeRO-2: per top-level layer its windowed flat range (gradients); tied
  // parameters' resident gradients.
  std::vector<std::pair<int64_t, int64_t>> layer_range_;
  std::vector<std::vector<Param*>> layer_params_;  // per layer: its (not tied) parameters in every slot
  std::vector<Param*> resident_;                   // tied parameters, every slot
  Tensor resident_buf_;
  Window win_[2];
  int turn_ = 0;       // the window the next layer takes
  Tensor scalar_;      // (1) f64 for the norm's all-reduce
  // ZeRO-3 (and ZeRO-1/2 under bf16): the masters of this rank's range and
  // their compute copy (ZeRO-3: the same tensor in fp32; ZeRO-1/2: a view of
  // the whole compute copy). ZeRO-3: two windows of gathered parameters in the compute
  // dtype; per top-level layer the flat range of its unit (every parameter
  // it reads) and those parameters in every slot.
  struct ParamWindow {
    Tensor buf;
    int64_t layer = -1;  // whose parameters it holds (or is receiving)
    WorkHandle pending;
  };
  void acquire(size_t layer, int64_t next);
  WorkHandle gather_range(int64_t lo, int64_t hi, const Tensor& dst);
  bool overlap_ = true;
  Tensor master_, compute_shard_;
  ParamWindow pwin_[2];  // [0] fits every unit, [1] those reading no tied parameter
  std::vector<std::pair<int64_t, int64_t>> gather_range_;
  std::vector<std::vector<Param*>> gather_params_;
  int64_t demand_gathers_ = 0;
  bool stale_ = false;  // shards_loaded under ZeRO-1/2: the whole compute copy awaits refresh()
};

}  // namespace dtrain
