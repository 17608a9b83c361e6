// The planner against a second published source with measured layouts: the
// BigScience workshop's search for BLOOM-176B's layout on 48 nodes of 8 A100
// 80 GB (Jean Zay, 384 GPUs), with Megatron-DeepSpeed. Source: S. Bekman et
// al., github.com/bigscience-workshop/bigscience, train/tr11-176B-ml/
// chronicles-prequel.md (commit 053adaf), sections "GBS Variations" and
// "Tweaking TP" (2022-02-25) and "Rebalancing layers" (2022-02-28): for each
// layout (dp, tp, pp, micro-batch, global batch) the seconds per iteration and
// the TFLOP/s per GPU that Megatron-DeepSpeed printed (96 B s l h^2 (1 + s/6h +
// V/16lh): full recomputation counted, as in Narayanan et al. 2021), or "OOM".
// BLOOM itself trained at tp 4, pp 12, dp 8, micro-batch 2 (tr11-176B-ml.slurm;
// model card: "about 150 TFLOPs").
//
// Its runtime, each from the code or the logs, not from these rows:
// - DeepSpeed's pipeline engine: 1F1B only (no interleaving); boundaries sent
//   1/tp per tp rank and all-gathered (PipelineEngine.is_pipe_partitioned for
//   tp > 1), the sent output's data freed once partitioned;
// - the cut: Megatron-DeepSpeed's GPTModelPipe partitions 'type:transformer'
//   (as many blocks per stage, the embedding with the first, the head with the
//   last); from 02-28 BigScience's 'type:transformer|embedding' (the embedding
//   and the head count as a block each: 70 + 2 over 12 stages);
// - full recomputation of the blocks (--checkpoint-activations, DeepSpeed's
//   checkpointing of the transformer layers only);
// - until 02-25 fp16 with DeepSpeed's ZeRO-1 (deepspeed/runtime/zero/
//   stage_1_and_2.py, v0.5-0.6; stage 1 turns overlap_comm and
//   contiguous_gradients off): 16-bit gradients accumulated by autograd,
//   all-reduced in buckets after the last backward (the pipeline schedule's
//   ReduceGrads), an fp32 copy of the owned shard for the update, the
//   updated shards all-gathered;
// - from 02-28 bf16 with BF16_Optimizer (deepspeed/runtime/bf16_optimizer.py,
//   2022-03/04): a whole fp32 gradient buffer ("not sharded across gpus")
//   beside the bf16 gradients, which the pipeline engine adds into it after
//   each backward and frees only at the next (clear_lp_grads); the fp32
//   buffer all-reduced as bf16 (communication_data_type) after the last
//   backward, the update on the owned shard, its bf16 parameters
//   all-gathered;
// - Megatron's fused softmax and bias-GeLU / bias-dropout-add kernels
//   (Kernels::megatron_2021), attention scores materialised, dropout 0.1 (the
//   scripts set none: Megatron's default), vocabulary padded to 250,880.
// The machine: the a100-80gb preset with Jean Zay's network, 4 Omni-Path
// 100 Gb/s links per node of 8 GPUs (model card), as BigScience measured it:
// an fp32 all-reduce of 4 GB over 4 nodes x 8 A100 (32 ranks), "busbw:
// 40.4912 Gbps", 5.06 GB/s (bigscience repo, experiments/bandwidth/
// all_reduce_bench-a100-n4.txt, commit e976fff, 2022-01-27; NCCL 2.10.3 with
// 2 channels over 2 of the 4 ports). That ring has 8 members per node and
// crosses each node once, so 2 ports carried 5.06 GB/s: with all 4 in use,
// as in training (4 or 8 rings per node), 4 x 2.53 / 8 = 1.27 GB/s per GPU,
// the preset's `inter`; a dp group with k members per node gets k times it
// (Hardware::group_link). How the node's 8 GPUs are linked is published only
// as "NVLink 4 inter-gpu connects"; the same log shows NCCL's P2P/IPC/read
// between GPUs 3 and 4, on different sockets, which NCCL 2.10 enables over
// NVLink only, so the preset's NVLink (230 GB/s) is assumed.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <vector>

#include "parallel/planner.h"

#include "parallel/gpt_config.h"

using namespace dtrain;

namespace {

enum class Runtime { fp16_zero1, bf16_optimizer };

struct Measured {
  int hidden, layers, heads, dp, tp, pp, micro_batch, batch;
  double tflops;  // per GPU as printed; 0 = out of memory
  Runtime runtime;
};

constexpr auto kFp16 = Runtime::fp16_zero1;
constexpr auto kBf16 = Runtime::bf16_optimizer;

// 2022-02-25: a 181B model (72 blocks of width 14336, 64 heads), fp16.
const Measured kSearch[] = {
    {14336, 72, 64, 8, 8, 6, 4, 2048, 141.27, kFp16},   {14336, 72, 64, 4, 8, 12, 4, 2048, 137.70, kFp16},
    {14336, 72, 64, 4, 8, 12, 2, 2048, 125.15, kFp16},  {14336, 72, 64, 6, 8, 8, 4, 2016, 140.24, kFp16},
    {14336, 72, 64, 12, 8, 4, 2, 2016, 126.43, kFp16},  {14336, 72, 64, 12, 8, 4, 4, 2016, 138.22, kFp16},
    {14336, 72, 64, 24, 8, 2, 1, 2016, 109.11, kFp16},  {14336, 72, 64, 24, 8, 2, 2, 2016, 116.58, kFp16},
    {14336, 72, 64, 48, 8, 1, 1, 2016, 0, kFp16},       {14336, 72, 64, 8, 4, 12, 4, 2048, 144.08, kFp16},
    {14336, 72, 64, 8, 4, 12, 2, 2048, 145.92, kFp16},  {14336, 72, 64, 16, 4, 6, 4, 2048, 137.66, kFp16},
    {14336, 72, 64, 16, 4, 6, 2, 2048, 144.31, kFp16},  {14336, 72, 64, 16, 2, 12, 2, 2048, 143.30, kFp16},
    {14336, 72, 64, 32, 2, 6, 2, 2048, 0, kFp16},       {14336, 72, 64, 32, 2, 6, 1, 2048, 0, kFp16},
    {14336, 72, 64, 8, 2, 24, 1, 2048, 134.88, kFp16},  {14336, 72, 64, 8, 2, 24, 2, 2048, 131.33, kFp16},
    {14336, 72, 64, 4, 4, 24, 1, 2048, 123.44, kFp16},
};

// 2022-02-28, bf16: tp 4 against tp 8 at pp 12 for two widths, BLOOM's shape
// last (70 blocks of 14336, as trained with 112 heads).
const Measured kTp8[] = {{14336, 70, 64, 4, 8, 12, 2, 2048, 128.92, kBf16}, {13312, 82, 64, 4, 8, 12, 4, 2048, 141.76, kBf16}};
const Measured kTp4[] = {{14336, 70, 64, 8, 4, 12, 2, 2048, 153.68, kBf16}, {13312, 82, 64, 8, 4, 12, 2, 2048, 151.71, kBf16}};
const Measured kBloom = {14336, 70, 112, 8, 4, 12, 2, 2048, 150.05, kBf16};

constexpr int64_t kSeq = 2048, kVocab = 250880;
constexpr int kGpus = 384;

Hardware jean_zay() {
  Hardware h = load_hardware("a100-80gb");
  h.fused_attention = false;
  h.kernels = Kernels::megatron_2021;
  h.tp_overlap = 0;
  h.inter.bandwidth = 4 * (40.49e9 / 8 / 2) / 8;  // 4 ports at the measured 2.53 GB/s each, over 8 GPUs
  return h;
}

PlanRequest request(const Measured& r, bool fixed) {
  PlanRequest q;
  q.model = test::gpt(r.layers, r.hidden, r.heads, kVocab, kSeq);
  q.model.dropout = 0.1;
  q.seq_len = kSeq;
  q.workload.global_batch = r.batch;
  q.workload.precision = "bf16";  // fp16 has the same bytes and peak
  q.workload.overlap = false;     // reduced after the backward
  q.devices = kGpus;
  q.hardware = jean_zay();
  q.recompute = 2;
  q.max_idle_fraction = 0;
  Features& f = q.features;
  f.sequence_parallel = false;
  f.selective = false;
  f.interleaved = false;
  f.max_zero = 1;
  f.caching_allocator = true;  // PyTorch's caching allocator
  f.p2p_scatter_gather = true;
  f.uniform_blocks = true;
  if (r.runtime == Runtime::bf16_optimizer) {
    f.embeddings_as_blocks = true;
    f.grad_bytes = 6;                // bf16 gradients (freed only by the next backward) + the whole fp32 buffer
    f.grad_reduce_bytes = 2;         // all-reduced as bf16 (communication_data_type)
    f.grad_accumulation_bytes = 10;  // after each backward: read bf16 2 + fp32 4, write fp32 4
  } else {
    f.grad_accumulation_bytes = 6;   // autograd's in-place add of 16-bit gradients
    f.update_grad_copy_bytes = 4;    // the owned shard's fp32 gradient
  }
  f.zero1_reduce_scatter = false;    // both all-reduce, then all-gather the updated shards
  q.runnable = f;
  q.zero = 1;
  if (fixed) {
    q.dp = r.dp;
    q.tp = r.tp;
    q.pp = r.pp;
    q.micro_batch = r.micro_batch;
  }
  return q;
}

double tflops(const Measured& r, double step_seconds) {
  const double B = r.batch, s = kSeq, l = r.layers, h = r.hidden, V = kVocab;
  return 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h)) / step_seconds / kGpus / 1e12;
}

// The layout as measured: its prediction, or nullopt where it does not fit.
std::optional<Prediction> predict_measured(const Measured& r) {
  const Plan p = make_plan(request(r, true));
  if (p.feasible.empty()) return std::nullopt;
  return p.feasible.front().p;
}

std::vector<double> ranks(const std::vector<double>& x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> r(x.size());
  for (size_t i = 0; i < order.size(); ++i) r[order[i]] = static_cast<double>(i);
  return r;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  double d2 = 0;
  for (size_t i = 0; i < a.size(); ++i) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  return 1 - 6 * d2 / (n * (n * n - 1));
}

}  // namespace

TEST_CASE("BLOOM-176B on 384 A100s: the trained layout (tp 4, pp 12) or within 5% of the pick, TFLOP/s within 15%") {
  const Plan free = make_plan(request(kBloom, false));
  REQUIRE(!free.feasible.empty());
  const Prediction& pick = free.feasible.front().p;
  const std::optional<Prediction> run = predict_measured(kBloom);
  REQUIRE(run);
  const double predicted = tflops(kBloom, run->step_seconds);
  std::printf("BLOOM-176B, 384 A100s: trained tp 4 pp 12 dp 8 mb 2 measured %.1f TFLOP/s, predicted %.1f (%+.1f%%); "
              "pick %s at %.1f, the trained layout %+.1f%% slower\n",
              kBloom.tflops, predicted, 100 * (predicted / kBloom.tflops - 1), describe(pick.c).c_str(),
              tflops(kBloom, pick.step_seconds), 100 * (run->step_seconds / pick.step_seconds - 1));
  CHECK(run->step_seconds <= 1.05 * pick.step_seconds);
  CHECK(std::abs(predicted / kBloom.tflops - 1) <= 0.15);
}

TEST_CASE("BLOOM's layout search: tp 4 beats tp 8 at pp 12, as measured, at three widths") {
  // 181B (fp16, 02-25: each at its faster micro-batch), 176B and 178B (bf16, 02-28).
  struct Pair {
    Measured tp4, tp8;
  };
  const Pair pairs[] = {{kSearch[10], kSearch[1]}, {kTp4[0], kTp8[0]}, {kTp4[1], kTp8[1]}};
  for (const Pair& p : pairs) {
    CAPTURE(p.tp4.hidden);
    const std::optional<Prediction> four = predict_measured(p.tp4), eight = predict_measured(p.tp8);
    REQUIRE(four);
    REQUIRE(eight);
    const double t4 = tflops(p.tp4, four->step_seconds), t8 = tflops(p.tp8, eight->step_seconds);
    std::printf("width %d, %d blocks, pp 12: tp 4 measured %.1f predicted %.1f (%+.1f%%); tp 8 measured %.1f "
                "predicted %.1f (%+.1f%%); measured tp 4 / tp 8 %.3f, predicted %.3f\n",
                p.tp4.hidden, p.tp4.layers, p.tp4.tflops, t4, 100 * (t4 / p.tp4.tflops - 1), p.tp8.tflops, t8,
                100 * (t8 / p.tp8.tflops - 1), p.tp4.tflops / p.tp8.tflops, t4 / t8);
    CHECK(t4 > t8);  // as measured: tp 4 faster in every pair
    CHECK(std::abs(t4 / p.tp4.tflops - 1) <= 0.15);
    // The 176B's tp 8 run measured 18.6% below its prediction: a known miss.
    CHECK((std::abs(t8 / p.tp8.tflops - 1) <= 0.15) == (p.tp8.layers != 70));
  }
}

TEST_CASE("BLOOM's layout search, 19 layouts of a 181B GPT: memory, order and TFLOP/s against the measurements") {
  std::vector<double> measured, predicted, measured_small, predicted_small;  // small: tp <= 4
  int within = 0, within_tp8 = 0, tp8 = 0, oom_right = 0, oom = 0;
  double best_measured = 0, best_predicted = 0, measured_at_predicted_best = 0;
  for (const Measured& r : kSearch) {
    CAPTURE(r.dp);
    CAPTURE(r.tp);
    CAPTURE(r.pp);
    CAPTURE(r.micro_batch);
    const std::optional<Prediction> p = predict_measured(r);
    if (r.tflops == 0) {
      ++oom;
      oom_right += !p;
      std::printf("dp %2d tp %d pp %2d mb %d: out of memory; %s\n", r.dp, r.tp, r.pp, r.micro_batch,
                  p ? fmt::format("predicted to fit ({:.1f} GiB)", p->memory.total() / (1 << 30)).c_str()
                    : "predicted not to fit");
      continue;
    }
    REQUIRE(p);  // every layout that ran is predicted to fit
    const double t = tflops(r, p->step_seconds);
    measured.push_back(r.tflops);
    predicted.push_back(t);
    if (r.tp <= 4) measured_small.push_back(r.tflops), predicted_small.push_back(t);
    const bool ok = std::abs(t / r.tflops - 1) <= 0.15;
    (r.tp == 8 ? within_tp8 : within) += ok;
    tp8 += r.tp == 8;
    best_measured = std::max(best_measured, r.tflops);
    if (t > best_predicted) best_predicted = t, measured_at_predicted_best = r.tflops;
    std::printf("dp %2d tp %d pp %2d mb %d: measured %6.2f TFLOP/s, predicted %6.1f (%+5.1f%%)%s  [%.1f GiB]\n", r.dp,
                r.tp, r.pp, r.micro_batch, r.tflops, t, 100 * (t / r.tflops - 1), ok ? "" : "  [> 15%]",
                p->memory.total() / (1 << 30));
  }
  const double rho = spearman(measured, predicted), rho_small = spearman(measured_small, predicted_small);
  const auto n = static_cast<int>(measured.size());
  std::printf("181B on 384 A100s: %d of %d out-of-memory layouts predicted not to fit; TFLOP/s within 15%%: "
              "tp <= 4 %d/%d, tp 8 %d/%d; Spearman %.3f over %d layouts, %.3f over the %d with tp <= 4; the "
              "predicted best measured %.1f%% below the measured best\n",
              oom_right, oom, within, n - tp8, within_tp8, tp8, rho, n, rho_small, n - tp8,
              100 * (1 - measured_at_predicted_best / best_measured));
  // Outcomes as of this model (docs/planner.md, "BLOOM's layout search": all
  // 16 within 15%, Spearman 0.674 and 0.833), so that a change that moves
  // one shows. With one port per GPU for every dp group (before
  // Hardware::group_link) the tp 8 layouts came out 11-41% high.
  CHECK(oom_right == oom);
  CHECK(within == n - tp8);
  CHECK(within_tp8 == tp8);
  CHECK(rho > 0.6);
  CHECK(rho_small > 0.8);
  CHECK(measured_at_predicted_best >= 0.98 * best_measured);
}

TEST_CASE("BLOOM's layout search, bf16: a 184B layout that ran out of memory at micro-batches 2 and 1") {
  // 02-28: 100 blocks of 12288, tp 4, pp 6, dp 16, "OOM" at both. Micro-batch
  // 2 is predicted not to fit, with BF16_Optimizer's bf16 and fp32 gradients
  // both held (6 bytes per parameter); micro-batch 1 is predicted to fit, at
  // 98% of the usable 72 GiB: a known miss.
  const Measured mb2{12288, 100, 64, 16, 4, 6, 2, 2048, 0, kBf16}, mb1{12288, 100, 64, 16, 4, 6, 1, 2048, 0, kBf16};
  CHECK(!predict_measured(mb2));
  const std::optional<Prediction> p = predict_measured(mb1);
  REQUIRE(p);
  std::printf("184B dp 16 tp 4 pp 6 mb 1: out of memory, predicted %.1f GiB of %.1f usable\n",
              p->memory.total() / (1 << 30), p->capacity / (1 << 30));
  CHECK(p->memory.total() > 0.95 * p->capacity);
}
