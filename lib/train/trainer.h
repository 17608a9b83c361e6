// The step loop, separate from the model: data -> forward/backward over the
// micro-batches of a step (through the pipeline stages, when there are
// several) -> data-parallel gradient reduction (overlapping the backward) ->
// gradient clipping -> optimizer update (sharded with ZeRO-1) -> logging and
// evaluation. Everything is allocated before the first step.
//
// One rank's view: it holds one pipeline stage (a range of the model's
// top-level layers, split by tensor parallelism), runs its share of the
// step's micro-batches, and talks to the others only through the
// communicators of its Groups. On one process those are one-member groups and
// the loop is plain gradient accumulation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/model.h"
#include "ops/runtime.h"
#include "optim/optimizer.h"
#include "parallel/layout.h"
#include "parallel/pipeline.h"
#include "train/data_source.h"
#include "train/grad_sync.h"
#include "train/hooks.h"
#include "train/local_sync.h"
#include "train/metrics.h"
#include "train/profiler.h"
#include "train/zero.h"

namespace dtrain {

struct EvalResult {
  double loss = 0;
  double accuracy = 0;  // fraction of items whose argmax is the target
  int64_t items = 0;
  bool abandoned = false;  // a stop was requested during it: no result
};

struct TrainSummary {
  int64_t steps = 0;      // steps done when run() returned (counting those before a resume)
  bool stopped = false;   // a hook ended the run (preemption): before train.steps, or at it before its evaluation
  int64_t skipped = 0;    // steps whose update was skipped (non-finite, train.skip_nonfinite)
  double last_loss = 0;
  EvalResult first_eval;  // before training
  EvalResult last_eval;   // after the last step
  double seconds = 0;
  double items_per_second = 0;
};

// What one step did, the same on every rank.
struct StepResult {
  double loss = 0;       // mean training loss over the global batch
  double grad_norm = 0;  // before clipping
  double seconds = 0;
  double dp_wait_seconds = 0;  // waiting for the gradient reduction after the backward
  double comm_seconds = 0;     // blocked in any communicator (dp, tp, pp, embed) this step
  // The loss or gradient norm was not finite and train.skip_nonfinite skipped
  // the update (without it, train_step throws naming the step).
  bool skipped = false;
};

struct TrainerOptions {
  // Every rank logs each pipeline operation and collective of the step loop
  // ("rank 3 (dp 1, tp 1, pp 0) step 2 F mb 1 slot 1 ...") through `trace`.
  std::function<void(const std::string&)> trace;
  // Tests only: the (agreed) loss of this step (1-based; 0 = none) becomes NaN.
  int64_t inject_nan_at_step = 0;
  // Tests only: 1 misplaces ZeRO's gradient reduce-scatter by one element, 2
  // its parameter all-gather (a broken shard the layout tests must catch).
  int zero_break = 0;
  // Tests only: under the interleaved schedule each stage's chunks hold the
  // layers of a contiguous run of virtual stages (stage * v + chunk) instead
  // of every pp-th (chunk * pp + stage), while the transfers keep the right
  // order: a broken chunk assignment the layout tests must catch.
  bool chunk_break = false;
  // Elements per all-gather when a load's ranges are gathered (range_loaded):
  // bounded so that one collective's counts fit MPI's int and a staged
  // gather's host buffer stays small; tests make it small.
  int64_t load_gather_window = int64_t{1} << 26;
  // --- profiler hook: times the top-level layers, loss, data, pipeline
  // waits, exposed gradient reduction and optimizer (train/profiler.h);
  // nullptr: no timers. Not owned.
  Profiler* profiler = nullptr;
  // This rank's index on its node: with train.device = "cuda" it takes GPU
  // local_rank % (GPUs on the node).
  int local_rank = 0;
  // The CPU threads of train.threads = 0 without OMP_NUM_THREADS: this rank's
  // share of its node's cores (MpiRuntime::cores_for_rank); 0 = every core
  // the process may run on.
  int cores = 0;
  // Called once per step (after the update) on the main thread: a device
  // communicator's watchdog reports a timeout or library error here.
  std::function<void()> comm_check;
  // The caller loads every parameter from a checkpoint before the first step
  // (a resume): none is drawn from train.seed (kValuesLoaded).
  bool values_loaded = false;
};

class Trainer {
 public:
  // Builds this rank's part of the model, its data sources and optimizer and
  // plans all memory. `groups` outlive the trainer. Progress lines go to
  // `log` on world rank 0 only.
  Trainer(const Config& cfg, const Groups& groups, std::function<void(const std::string&)> log,
          TrainerOptions options = {});
  // One process: one-member groups.
  Trainer(const Config& cfg, std::function<void(const std::string&)> log, TrainerOptions options = {});
  ~Trainer();

  // Trains up to cfg.train.steps steps, writing <out_dir>/config.toml and
  // <out_dir>/metrics.jsonl (world rank 0); evaluates before the first step,
  // every train.eval_every steps and after the last. `opts` resumes from a
  // step and plugs in hooks (checkpoints, preemption).
  TrainSummary run(const RunOptions& opts = {});

  // One optimizer step (0-based index `step`).
  StepResult train_step(int64_t step);
  // One evaluation pass over the validation data (same result on every rank).
  // `stop`, where given, is asked between its batches (at the same points on
  // every rank, returning the same): true abandons the pass.
  EvalResult evaluate(const std::function<bool()>& stop = {});

  // This rank's model: every parameter it holds (all model chunks' under the
  // interleaved schedule), what the optimizer and checkpoints work on.
  Model& model() { return owner_ ? *owner_ : *slots_[0]; }
  // This stage's model chunks in order (one unless parallel.schedule is
  // "interleaved"): the first copy of each, the index in model().layers of
  // its first layer, and its copies (micro-batches in flight).
  struct Chunk {
    Model* model;
    size_t first_index;
    int copies;
  };
  std::vector<Chunk> chunks();
  Optimizer& optimizer() { return *opt_; }
  const Config& config() const { return cfg_; }
  const Groups& groups() const { return g_; }
  // Tokens or images one optimizer step consumes (all ranks together).
  int64_t items_per_step() const { return cfg_.train.global_batch * slots_[0]->items_per_sample(); }
  // The training data in one line (DataSource::describe), the same on every
  // rank; "" when each data-parallel replica reads a file of its own.
  std::string train_data() const;
  // The validation data in one line (DataSource::describe), and the samples
  // (sequences or images) it holds: evaluate() reads train.eval_batches
  // micro-batches of them, or all with eval_batches = 0.
  std::string val_data() const;
  int64_t val_samples() const;
  // Top-level layers [first, last) of every stage, stage by stage (virtual
  // stage by virtual stage under the interleaved schedule).
  const std::vector<int64_t>& stage_bounds() const { return bounds_; }
  // The flat range of the parameters whose optimizer state this rank keeps.
  FlatRange optimizer_range() const { return opt_range_; }
  // The ZeRO stage in effect (0 when parallel.zero = 0 or dp = 1) and its sharding.
  int zero_stage() const { return zero_ ? zero_->stage() : 0; }
  const ZeroSharding* zero() const { return zero_.get(); }
  // parallel.sync = "local": the outer state (the last synced parameters and
  // the outer momentum); null under sync = "step" and under local sync that
  // is data parallelism (H = 1, plain averaging: config.h local_sync_is_dp).
  LocalSync* local_sync() { return local_.get(); }
  // ZeRO-3, and ZeRO-1/2 under bf16, keep only each rank's shard of the fp32
  // masters: gather_full_params puts the full masters back in every
  // Param::value (an all-gather over dp: every rank calls it) until
  // release_full_params. Nothing to do otherwise. Checkpoints and imported
  // weights never need this (master_shard); tests read the full parameters
  // this way.
  void gather_full_params();
  void release_full_params();
  // The same masters without a gather: this rank's shard of them, flat
  // elements optimizer_range() of model().params (undefined where the
  // masters are whole). A load that writes it calls range_loaded.
  Tensor master_shard();
  // The flat range of model().params that this rank saves and loads of a
  // checkpoint: under ZeRO its optimizer range; under data parallelism
  // without ZeRO part d of dp equal parts (every replica holds everything:
  // the replicas share the bytes); else all of it (also under local sync,
  // whose replicas differ). checkpoint_counts: every data-parallel rank's
  // range size, in rank order (the ranges are consecutive); one count, the
  // whole, where every rank loads everything (dp 1, local sync).
  FlatRange checkpoint_range() const;
  std::vector<int64_t> checkpoint_counts() const;
  // After a load that read checkpoint_range() of the masters (into the shard
  // where ZeRO shards them) and, with `state`, of the optimizer state: the
  // compute copy follows, and what this rank holds whole but loaded only its
  // range of is all-gathered over dp at the next step or evaluation
  // (refresh_loaded), not during the load, which never communicates.
  void range_loaded(bool state);

 private:
  void setup();
  void open_own_data();  // data_, agreed over the world when each replica has its own file
  // Trace lines are built only when tracing is on (callers check tracing()):
  // the step loop formats nothing otherwise.
  bool tracing() const { return static_cast<bool>(options_.trace); }
  void trace(const std::string& what) const;
  // "mb 1 slot 1", or "mb 1 chunk 0 slot 1" under the interleaved schedule.
  std::string op_at(int micro, int chunk, int slot) const;
  // Samples of micro-batch `micro` of this data-parallel rank in step `step`.
  int64_t sample_offset(int64_t step, int64_t micro) const;
  // `then` (ZeRO-3; -1: none): the layer the step's next operation starts
  // with, whose gather this operation's last layer starts (prefetch across
  // the forward/backward turn and between an interleaved stage's chunks).
  // Schedule op i: its input was received by an earlier exchange(); its
  // output, if it is sent, is kept in outputs_[i] for a later one.
  void forward_op(int i, const Ctx& ctx, int64_t then = -1);
  void backward_op(int i, const Ctx& ctx, double scale, bool last, int64_t then = -1);
  // Issues one batch of the step's pipeline transfers (parallel/pipeline.h:
  // pipeline_transfers) as one batch_p2p; waits for it when it receives.
  void exchange(const PipeBatch& batch);
  // --- interleaved schedule: model chunks and their copies.
  void build_chunks(DType dtype, const Exec& ex);
  int slot_of(int chunk, int micro) const;  // index into slots_
  int vstage(int chunk) const { return chunk * g_.layout.pp + g_.coord.pp; }
  // The virtual stage whose layers chunk holds: vstage(chunk), except under
  // TrainerOptions::chunk_break.
  int layers_vstage(int chunk) const {
    return options_.chunk_break ? g_.coord.pp * chunks_ + chunk : vstage(chunk);
  }
  // Waits for the transfers still in flight that send from `slot` (-1: all).
  void wait_sends(int slot);
  // --- profiler hook: the stage's layers one by one (timed when profiling).
  // `base`: index in model().layers of m's first layer; `timed`: false for
  // evaluation. ZeRO-3 gathers each layer's parameters here.
  Tensor forward_stage(Model& m, const Tensor& in, const Ctx& ctx, int micro, size_t base, bool timed = true,
                       int64_t then = -1);
  double agree_loss(double local_sum, int64_t count);
  double global_grad_norm();
  // The sum of squares of every rank's batch-norm running statistics (over dp
  // and pp): not finite when one of them is not. Every rank of a model with
  // batch norm calls it, whether or not its stage holds one.
  double buffer_sum_squares();
  // The name of the first running statistic on this rank that is not finite, or "".
  std::string nonfinite_buffer();
  double comm_wait_total() const;
  void sync_buffers();
  void outer_sync();          // parallel.sync = "local": the end of a period
  EvalResult evaluate_now(const std::function<bool()>& stop);  // evaluate() with the parameters as they are

  // Host staging of a micro-batch for a device run: filled by the samplers,
  // uploaded on the stream; the event says when the upload has read it.
  void upload(int slot, int64_t n);

  Config cfg_;
  std::unique_ptr<ops::Runtime> runtime_;  // the device (CPU, or a GPU's stream and handles)
  std::unique_ptr<SelfGroups> self_;  // one process: the groups we own
  Groups g_;
  std::function<void(const std::string&)> log_;
  TrainerOptions options_;
  int64_t seq_len_ = 0;
  std::vector<int64_t> bounds_;
  std::vector<PipeOp> ops_;  // this stage's forward/backward order within a step
  std::vector<PipeBatch> transfers_;  // its pipeline transfers, batched, in issue order
  ModelParallel par_;
  std::vector<std::unique_ptr<Model>> slots_;  // chunk by chunk, its copies; slot 0 owns the parameters unless owner_
  // --- interleaved schedule (else one chunk): chunk c's copies are slots_
  // [chunk_slot_[c], chunk_slot_[c + 1]); its first layer is model().layers[chunk_layer_[c]].
  int chunks_ = 1;
  std::vector<int> chunk_slot_;
  std::vector<size_t> chunk_layer_;
  std::unique_ptr<Model> owner_;  // chunks_ > 1: all chunks' layers and parameters, never run
  std::unique_ptr<Optimizer> opt_;
  FlatRange opt_range_;
  // range_loaded: what refresh_loaded gathers before the next forward.
  bool gather_masters_ = false, gather_state_ = false;
  void refresh_loaded();
  // The last update zeroed every gradient in its pass (Optimizer::step's
  // zero_grads): the next step skips its zeroing pass.
  bool grads_zeroed_ = false;
  std::unique_ptr<ZeroSharding> zero_;  // ZeRO-1/2/3 over dp (null: gradients all-reduced by reducer_)
  std::unique_ptr<GradReducer> reducer_;
  std::unique_ptr<LocalSync> local_;  // local_sync_active (then no per-step gradient reduction over dp)
  DataSources data_;
  std::vector<Tensor> x_, y_;      // per slot: the micro-batch's inputs and targets (on the device)
  std::vector<Tensor> xh_, yh_;    // per slot, device runs only: their pinned host staging
  std::vector<void*> uploaded_;    // per slot, device runs only: event after the upload
  std::vector<Tensor> stage_in_;   // per slot: activations received from the previous stage
  std::vector<Tensor> grad_in_;    // per chunk: dL/d(output) received from the next stage
  std::vector<Tensor> outputs_;    // per schedule op: its output until a batch sends it
  struct InFlight {
    WorkHandle work;         // a batch of sends only, not waited for yet
    std::vector<int> slots;  // the slots it sends from
  };
  std::vector<InFlight> sends_;
  Tensor scalars_;                 // (4) fp64 for small agreements
  Tensor buffers_at_start_;        // batch-norm running statistics as the step began (sync_buffers'
                                   // r0; put back by a skipped step)
  int64_t current_step_ = 0;
};

}  // namespace dtrain
