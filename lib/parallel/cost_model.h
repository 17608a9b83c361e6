// The cost model: given the model's per-stage costs (model_profile.h), the
// hardware, and one candidate layout (dp x tp x pp, micro-batch size and
// count, ZeRO stage, activation recomputation, pipeline schedule), predict the
// memory each device needs and the time of one optimizer step. The formulas,
// with their sources, are written out in docs/planner.md; each function below
// names the one it implements.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "model/arena.h"  // Recompute
#include "parallel/hardware.h"
#include "parallel/model_profile.h"
#include "parallel/pipeline.h"

namespace dtrain {

// --- Collectives (alpha-beta model; bandwidth per device and direction) ---
// Ring all-reduce of `bytes` over n ranks: 2(n-1) steps, each moving bytes/n
// (NCCL's ring; Patarasuk & Yuan 2009): 2(n-1) a + 2(n-1)/n S/B.
double ring_all_reduce_seconds(double bytes, int n, const Link& link);
// Tree all-reduce (NCCL's double binary tree): 2 log2(n) a + 2 S/B.
double tree_all_reduce_seconds(double bytes, int n, const Link& link);
// What NCCL would pick: the faster of the two (0 for n = 1).
double all_reduce_seconds(double bytes, int n, const Link& link);
// Ring reduce-scatter or all-gather of `bytes` in total: (n-1) a + (n-1)/n S/B.
double all_gather_seconds(double bytes, int n, const Link& link);
// One point-to-point message: a + S/B.
double p2p_seconds(double bytes, const Link& link);

// What is being trained.
struct Workload {
  int64_t global_batch = 0;        // samples per optimizer step
  std::string precision = "fp32";  // "fp32" | "bf16" (mixed: bf16 compute, fp32 master state)
  std::string optimizer = "adamw"; // "adamw" | "sgd"
  bool momentum = true;            // sgd: keeps a momentum buffer
  double bucket_bytes = 25.0 * 1024 * 1024;  // gradient all-reduce bucket (parallel.bucket_mb)
  bool overlap = true;  // buckets start during the backward (parallel.overlap); false: after it
  // parallel.sync = "local" (lib/train/local_sync.h), when it is not plain
  // data parallelism: no gradient all-reduce; every local_sync_every steps
  // one all-reduce of the fp32 parameter changes over dp and the outer step.
  // 0: off (the gradients are all-reduced every step).
  int64_t local_sync_every = 0;
  bool outer_momentum = false;  // outer_optim = "nesterov": one more fp32 copy
};

// Which features the training code running the plan has.
struct Features {
  bool recompute = true;             // full activation recomputation per transformer block
  bool selective = true;             // selective recomputation (the scores and GELU's output remade)
  // ZeRO-1/2 reduce gradients with a reduce-scatter (Megatron's distributed
  // optimizer; half the traffic of the all-reduce it replaces), then
  // all-gather the updated parameters; false: all-reduce, then all-gather.
  bool zero1_reduce_scatter = true;
  int max_zero = 3;                  // the highest ZeRO stage (3: parameters sharded too)
  bool interleaved = true;           // interleaved 1F1B (virtual pipeline stages)
  bool sequence_parallel = true;     // sequence parallelism over tp (GPT)
  bool bf16 = true;                  // mixed precision available
  bool tp_for_cnn = false;
  // How a stage's activation memory is held. false, as lib/train holds it:
  // every micro-batch copy in flight keeps its buffers for the whole step,
  // the transformer blocks of all the stage's copies and chunks share one set
  // of work buffers (and, under recomputation, of remade activations), and
  // each copy keeps its own copy of what it hands on out of that set
  // (Model::share_arena). true: a caching allocator (PyTorch's), freeing a
  // copy's activations at its backward: the live copies at their most at
  // once, plus one set of work buffers and remade activations.
  bool caching_allocator = false;
  // ZeRO-2/3's unit of gathering and reducing, in parameters: 0 = a whole
  // top-level layer (a GPT block), as lib/train's ZeRO is specified; > 0 =
  // units no larger than that (DeepSpeed gathers per module: a block's
  // largest Linear, 4 h^2). Two units are live at once (current, prefetched).
  double zero_unit_params = 0;
  // How the runtime cuts a pipeline: false = by forward + backward FLOPs over
  // the top-level layers (this trainer, partition_layers); true = the same
  // number of transformer blocks in every chunk, the embedding with the first
  // and the head with the last (Megatron-LM: num_layers divisible by pp, the
  // blocks per stage by the virtual stages, which may be any divisor), and the
  // interleaved schedule only from `min_interleaved_stages` stages on
  // (Megatron-LM: more than 2).
  bool uniform_blocks = false;
  int min_interleaved_stages = 2;
  // With uniform_blocks: the layers before the first block (the embedding)
  // and those after the last (the final norm, the head and the loss) each
  // count as one more block, so a stage holding one holds one block fewer
  // (BigScience's Megatron-DeepSpeed, --pp-partition-method
  // 'type:transformer|embedding', as BLOOM trained: 70 blocks + 2 over 12
  // stages). false: they ride with the first and the last chunk.
  bool embeddings_as_blocks = false;
  // Megatron-LM's scatter/gather of stage boundaries (Narayanan et al. 2021,
  // section 4.1): each of the t tp ranks sends 1/t of the boundary activation
  // over its own link and the receiving stage all-gathers it over the
  // intra-node link; false: every tp rank sends the whole activation (this
  // trainer).
  bool p2p_scatter_gather = false;
  // Bytes per optimizer-owned parameter that a mixed-precision update
  // allocates beside the gradients while it runs, after the backward freed the
  // activations: 0 for this trainer (fp32 gradients updated in place); 4 for
  // Megatron-LM 2021's Float16OptimizerWithFloat16Params, which casts every
  // 16-bit gradient to a new fp32 tensor (`main_param.grad =
  // model_param.main_grad.float()`).
  double update_grad_copy_bytes = 0;
  // Bytes per parameter a micro-batch's backward moves to add its weight
  // gradients to the ones accumulated so far, every micro-batch after the
  // first: 0 for this trainer (its weight-gradient products accumulate into
  // the gradients, beta = 1); 6 for PyTorch's autograd in 16-bit, as
  // Megatron-LM 2021 ran (each product writes a new gradient tensor, which
  // AccumulateGrad adds to param.grad in place: read 2 + 2, write 2; the
  // local DDP's contiguous main_grad buffer does the same add_ in a hook).
  double grad_accumulation_bytes = 0;
  // A pipeline stage keeps the data of every output it sent until that
  // micro-batch's backward (the output is what the backward starts from):
  // one more boundary activation per micro-batch copy in flight, on every
  // chunk that sends one. Megatron-LM until 2022 (schedules.py appends each
  // output_tensor to output_tensors and pops it at the backward; its
  // `deallocate_pipeline_outputs`, which frees the data once sent, came in
  // 2022). false: freed once sent (this trainer, Megatron-LM since).
  bool keeps_sent_outputs = false;
  // The data-parallel wrapper that overlaps its all-reduce with the backward
  // (Workload::overlap) runs only without a pipeline; with pp > 1 the
  // gradients are all-reduced after the backward. Megatron-LM 2021: PyTorch's
  // DDP for pp = 1, its own local DDP otherwise (training.py asserts
  // `DDP_impl == 'local'` for pp > 1; the SC21 scripts choose them so).
  bool overlap_without_pipeline_only = false;
  // Bytes per parameter of a second copy of the gradients that the
  // overlapping data-parallel wrapper holds for the whole run, copying them
  // in and out around its all-reduce: 0 for this trainer (its buckets are
  // views of the gradients); 2 for PyTorch's DistributedDataParallel with
  // 16-bit gradients before gradient_as_bucket_view (PyTorch 1.7, off by
  // default): its reducer's buckets are their own flat tensors
  // (pytorch/pytorch#41954: "peak memory dropped ~1GB" for a model of ~1 GB
  // of parameters once they became views).
  double ddp_bucket_copy_bytes = 0;
  // Bytes per parameter of the gradients the devices keep and the
  // data-parallel reduction moves, where the runtime's differ from the
  // workload's (StateBytes::grads: 2 under bf16); 4 = fp32, as this trainer
  // keeps and reduces them (ParamStore holds the gradients in the master
  // dtype: Features::this_trainer) and as Megatron-Core accumulates and
  // reduces them for bf16 (its main_grad buffers; arguments.py sets
  // accumulate_allreduce_grads_in_fp32 for bf16).
  double grad_bytes = 0;
  // ZeRO-1 reduce-scatters the gradients into a shard buffer of its own
  // beside the full gradient buffer (1/dp more gradient memory): this trainer
  // (lib/train/zero.h, `grad_shard`); false: in place in the gradient buffer
  // (Megatron's distributed optimizer).
  bool zero1_grad_shard = false;
  // Bytes per parameter the data-parallel reduction sends, where they differ
  // from the gradients kept (grad_bytes): 0 = the same. DeepSpeed's
  // BF16_Optimizer (2022) keeps bf16 and fp32 gradients (grad_bytes 6) and
  // all-reduces a bf16 copy of the fp32 ones (its communication_data_type
  // defaults to bf16): 2.
  double grad_reduce_bytes = 0;
  // Fraction of a pass that ZeRO-3's gathers and reductions run behind, where
  // the runtime's differs from the hardware's overlap (< 0: Hardware::overlap).
  // DeepSpeed's ZeRO-3 of 2021 (v0.3.13-v0.5.4): 0. Each parameter's
  // all-gather follows a torch.cuda.synchronize() (partition_parameters.py,
  // _allgather_param), fetch_sub_module waits for it before the module runs,
  // and prefetching was off (its trace check failed on the root module's hook
  // order, DeepSpeed issue #1069); PR #1188 (v0.5.5, 2021-10) removed the
  // synchronisation.
  double zero3_overlap = -1;
  // Fraction of a backward pass that ZeRO-3's gradient reduce-scatters run
  // behind, where it differs from the gathers' (< 0: zero3_overlap).
  // DeepSpeed's ZeRO-3 of 2021 reduces on a stream of its own
  // (`overlap_comm`, on by default for stage 3: ZERO3_OPTIMIZATION_OVERLAP_
  // COMM_DEFAULT, v0.3.13 on) while its gathers wait for the device: the
  // hardware's overlap for the reductions, 0 for the gathers.
  double zero3_reduce_overlap = -1;
  // Bytes per second per device at which the runtime's ZeRO-3 gathers and
  // reductions move data, where the runtime and not the link limits them
  // (0: the link's bandwidth, Hardware::group_link). DeepSpeed v0.3.16 with
  // PyTorch 1.8 gathered at about 21.9 GB/s per GPU on one 8-GPU NVLink node
  // (A100, p4d), where NCCL moves about 230: a 5.1B BERT's forward took
  // 470 ms under ZeRO-3 against 60 ms under ZeRO-2, 410 ms for 7/8 of
  // 10.25 GB of gathered fp16 parameters (DeepSpeed issue #1174 and PR #1188,
  // 2021-06). The rate is the whole per-parameter path (host
  // synchronisation, zero-filled buffer, list all-gather and its copies).
  double zero3_rate = 0;
  // Under full recomputation the blocks' checkpointed inputs are kept in host
  // memory: each is copied there in the block's forward and back before its
  // backward, at the hardware's host bandwidth (Hardware::host_bandwidth),
  // and the host waits for both; the device holds none of them. DeepSpeed's
  // activation checkpointing with `cpu_checkpointing`, as DeepSpeed's own
  // ZeRO-3 example for Megatron-LM's GPT of 2021 runs it
  // (DeepSpeedExamples, Megatron-LM-v1.1.5-ZeRO3/examples/
  // ds_pretrain_gpt2-zero3.sh: PA_CPU=true, --checkpoint-in-cpu; v0.3.16's
  // checkpointing.py copies each into a CPU buffer with a blocking copy_ and
  // back with .to(device)). false: on the device (this trainer).
  bool host_checkpoints = false;
  // Under full recomputation ZeRO-3 gathers the remade blocks' parameters once
  // more (this trainer: the gather is a pre-forward hook and the window holds
  // one layer); false: the remade forward finds them still gathered for the
  // backward that follows it (DeepSpeed: max_reuse_distance 1e9 by default).
  bool zero3_regather_remade = true;
  // Sequence parallelism's second all-gather of each product's input in
  // backward (Cost::tp_regather_*) also after a recomputed forward: Megatron-
  // LM's LinearWithGradAccumulationAndAsyncCommunication saves the slice and
  // gathers in every backward; false: this trainer's Block, whose re-run
  // forward has just gathered them.
  bool sp_regather_after_recompute = false;
  // The ZeRO-1/2 all-gather of the updated parameters runs during the next
  // step's first forward, bucket by bucket (Megatron-Core's
  // --overlap-param-gather), hidden behind `overlap` of it but never less
  // than its first bucket; false: after the update, exposed (this trainer).
  bool overlap_param_gather = false;
  // Interleaved, each chunk's gradient reduction (ZeRO-0/1) starts with that
  // chunk's last backward rather than with the stage's last: Megatron-Core's
  // interleaved schedule (it calls the chunk's grad_sync_func once its last
  // micro-batch has gone backward: schedules.py, r0.8). The stage's backwards
  // run chunk by chunk in groups of p micro-batches, so chunk j's reduction
  // has the last group's backwards of chunks j-1 .. 0 to hide behind; the
  // chunks' reductions share the link one after another. false: every
  // chunk's buckets start with the stage's last backward (this trainer;
  // starting them per chunk measured no faster here, where the ranks share
  // the cores: tools/bench/parallel_results.md).
  bool grad_sync_per_chunk = false;
  static Features this_trainer();    // what lib/train runs today
  static Features full();            // everything the model knows, for what-ifs
};

struct Candidate {
  int dp = 1, tp = 1, pp = 1;
  int64_t micro_batch = 1;   // samples per micro-batch
  int64_t micro_batches = 1; // per step per pipeline (grad_accum)
  // 0 | 1 optimizer state sharded | 2 and gradients (reduce-scattered every
  // micro-batch) | 3 and parameters (all-gathered before each forward and
  // backward, Rajbhandari et al. 2020 section 7: 1.5x plain dp's traffic)
  int zero = 0;
  Recompute recompute = Recompute::none;
  std::string schedule = "1f1b";  // "1f1b" | "gpipe" | "interleaved" (the same when pp = 1)
  int virtual_stages = 1;         // model chunks per stage (interleaved: >= 2)
  bool sequence_parallel = false; // tp > 1
  int devices() const { return dp * tp * pp; }
  int chunks() const { return schedule == "interleaved" ? virtual_stages : 1; }
};

// "none" | "selective" | "full".
const char* recompute_name(Recompute r);

struct Memory {
  int stage = 0;  // the stage whose devices need the most
  double params = 0, grads = 0, optimizer = 0, activations = 0;
  // What the update allocates while it runs (Features::update_grad_copy_bytes),
  // when the activations are gone: the peak is the larger of the two.
  double update_copy = 0;
  // Local sync's fp32 copies (anchor, change, saved parameters; the outer
  // momentum under Nesterov), beside the optimizer's state.
  double local_sync = 0;
  // A checkpoint adds nothing on the device: under ZeRO each rank saves and
  // loads its own range (lib/checkpoint/session.cpp), through host copies.
  double total() const { return params + grads + optimizer + local_sync + std::max(activations, update_copy); }
};

struct Prediction {
  Candidate c;
  Memory memory;             // of the fullest device
  double capacity = 0;       // usable bytes per device
  double step_seconds = 0;
  // Parts of the step (they add up to step_seconds):
  double pipeline_seconds = 0;   // forward + backward of all micro-batches incl. bubble, tp and p2p time
  double dp_exposed_seconds = 0; // gradient reduction not hidden behind the backward
  double embed_seconds = 0;      // tied-embedding gradient sum between first and last stage
  double optimizer_seconds = 0;  // update, grad zeroing and norm; ZeRO all-gather
  // Inside the pipeline time:
  double compute_seconds = 0;    // one device's matrix products at their shapes' rates (recompute included)
  double memory_bound_seconds = 0; // its memory-bound passes (norms, softmax, GELU, residuals, loss)
  double zero3_seconds = 0;      // ZeRO-3 gathers and scatters not hidden behind compute
  double host_seconds = 0;       // checkpoints copied to host memory and back (Features::host_checkpoints)
  double tp_seconds = 0;         // tp all-reduces on the busiest stage
  double pp_seconds = 0;         // stage-boundary transfers on the busiest stage
  double bubble_fraction = 0;    // of the schedule's time the slowest stage idles: (p-1)/m when balanced
  double sharing_seconds = 0;    // of pipeline_seconds, waiting for compute units other ranks share
  double ideal_bubble = 0;       // (p-1)/m
  double tokens_per_second = 0;  // items (tokens or images) per second
  double mfu = 0;                // model FLOPs / (step time x devices x peak)
  // Bytes each device sends per step, per group (the busiest stage's).
  double tp_bytes = 0, pp_bytes = 0, dp_bytes = 0;
};

// Bytes per parameter of parameters, gradients and optimizer state for the
// workload (ZeRO paper, section 3.1: mixed-precision Adam is 2 + 2 + 12).
struct StateBytes {
  double params, grads, optimizer, update_traffic;  // update_traffic: bytes the optimizer step reads + writes
};
StateBytes state_bytes(const Workload& w);

// Micro-batches whose activations stage `stage` of `stages` holds at once:
// GPipe m; 1F1B min(stages - stage, m) (Narayanan et al. 2021, section 2.2).
int64_t in_flight_micro_batches(const std::string& schedule, int stage, int stages, int64_t micro_batches);

// Interleaved 1F1B: per model chunk of stage `stage`, the most micro-batches
// whose activations that chunk holds at once, from the trainer's own schedule
// (pipeline_schedule); the counts stop growing at 2 x stages micro-batches,
// so at most that many are simulated.
std::vector<int64_t> interleaved_in_flight(int stage, int stages, int64_t micro_batches, int chunks);

// Interleaved 1F1B under a caching allocator, where a copy's memory is freed
// at its backward and reused by the next forward of any chunk: the most
// bytes stage `stage`'s live copies hold at once, a copy of chunk c weighing
// per_copy[c]. At most the sum over chunks of interleaved_in_flight x
// per_copy (each chunk's most at its own moment), and below it: chunk 0 holds
// its most late in the warm-up, the last chunk early (p = 12, v = 4, stage 0:
// 59 copies at once against 24 + 24 + 12 + 12 = 72). The pattern repeats
// every stages x chunks forwards, so 4 x stages micro-batches are simulated
// at most.
double interleaved_peak_bytes(int stage, int stages, int64_t micro_batches, const std::vector<double>& per_copy);

// A pipeline whose stages share compute units (4 ranks on 2 cores: 2
// units for 4 stages): the step's schedule run operation by operation.
// ops[s] is stage s's schedule (pipeline_schedule); fwd[k] and bwd[k] the
// seconds of one micro-batch's forward and backward of virtual stage k
// (chunk k / p on stage k mod p) at a whole unit's rate, each with the
// receipt of its input. A forward starts once the previous virtual stage's
// forward of its micro-batch is done, a backward once the next one's backward
// is; the busy stages share `units` equally, none faster than a whole unit.
// So a 1F1B warm-up runs only forwards on the idle stages' units, not whole
// forward-and-backward slots. With units >= stages it is the schedule's
// unshared time, (m + p - 1)(f + b) for equal stages.
double shared_pipeline_seconds(const std::vector<std::vector<PipeOp>>& ops, const std::vector<double>& fwd,
                               const std::vector<double>& bwd, double units);

// shared_pipeline_seconds of the whole step's schedule (pipeline_schedule:
// `schedule` on `stages` stages, `micro_batches` micro-batches, `chunks`
// per stage). A long 1F1B or interleaved step is simulated at two lengths,
// kSimulatedPeriods and one fewer periods of 2 x stages micro-batches, and
// extended linearly: the steady state adds the same time every period, the
// warm-up and drain are the same at both lengths (1F1B exactly; interleaved
// within 1e-3 of the whole simulation). So the cost does not grow with the
// micro-batches. GPipe, without a steady state, is simulated whole.
inline constexpr int64_t kSimulatedPeriods = 5;
// The micro-batches shared_schedule_seconds simulates for a step of
// `micro_batches` (at most kSimulatedPeriods periods; GPipe's all).
int64_t simulated_micro_batches(const std::string& schedule, int stages, int64_t micro_batches);
double shared_schedule_seconds(const std::string& schedule, int stages, int64_t micro_batches, int chunks,
                               const std::vector<double>& fwd, const std::vector<double>& bwd, double units);

// Predicts one candidate. `stages` must be profile_stages(profile for c.tp and
// c.sequence_parallel, c.pp x c.chunks()): chunk k runs on stage k mod pp.
Prediction predict(const ModelProfile& model, const std::vector<StageProfile>& stages,
                   const Hardware& hw, const Workload& w, const Features& f, const Candidate& c);

}  // namespace dtrain
