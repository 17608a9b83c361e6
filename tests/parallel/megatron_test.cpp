// Acceptance: the planner against published expert practice. Source:
// D. Narayanan, M. Shoeybi, J. Casper, P. LeGresley, M. Patwary, V. Korthikanti,
// D. Vainbrand, P. Kashinkunti, J. Bernauer, B. Catanzaro, A. Phanishayee,
// M. Zaharia, "Efficient Large-Scale Language Model Training on GPU Clusters
// Using Megatron-LM", SC 2021, arXiv:2104.04473:
// - Table 1 (weak scaling, 1.7B to 1T parameters on 32 to 3072 A100 80 GB in
//   DGX A100 nodes, vocabulary 51,200, sequence 2048): the published tensor-
//   and pipeline-parallel sizes and the achieved TFLOP/s per GPU. The table
//   gives no micro-batch size or schedule; the authors' scripts for it do
//   (Megatron-LM, examples/sc21/run_table_1.sh, commit de7dc40 of 2021-08-10:
//   micro-batch, layers per virtual pipeline stage, DDP implementation). The
//   layout check lets the planner choose them for the published (tp, pp); the
//   TFLOP/s check predicts the run as the script gives it.
// - Table 2 (PTD-P against ZeRO-3 without model parallelism, 175B and 530B):
//   model-parallel size (tp 8 x pp 12 = 96, tp 8 x pp 35 = 280), micro-batch
//   size and TFLOP/s per GPU.
// TFLOP/s per GPU are counted as the paper counts them (its section 5.1):
// 96 B s l h^2 (1 + s / 6h + V / 16lh) per step, which includes the forward
// recomputation of full activation recomputation, used in these runs; so the
// rows are planned with recompute = full.
// The software of 2021 differs from this trainer's and from the presets'
// backend in three documented ways (docs/planner.md, "Checked against published
// runs"): attention materialises the scores (fused softmax kernels, no flash
// attention: Hardware::fused_attention = false), its memory-bound kernels are
// Megatron-LM's (Kernels::megatron_2021: JIT bias-GeLU and bias-dropout-add,
// apex layer norm, attention dropout, fp32 loss), and tensor-parallel
// communication is not overlapped (tp_overlap = 0, as in the presets).
// Megatron-LM's runtime is described by five Features, each from its code or
// the paper: the pipeline cut (as many blocks per stage and chunk,
// interleaving from 3 stages), the update's fp32 copy of the 16-bit gradients,
// the scatter/gather of stage boundaries, autograd's gradient accumulation
// over the micro-batches, and the sent outputs kept to their backward; and
// PyTorch's caching allocator (caching_allocator = true).
// Everything else is the a100-80gb preset; nothing is fitted per row.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "parallel/planner.h"

#include "parallel/gpt_config.h"

using namespace dtrain;

namespace {

struct Row {
  double billions;
  int heads, hidden, layers, tp, pp, gpus, batch;
  double tflops;
  int micro_batch = 0;  // Table 2; 0 = not published
  int zero = -1;        // Table 2's ZeRO-3 rows: 3
  // Known misses, asserted as such so that a change that fixes (or breaks)
  // one shows: the planner prefers another (tp, pp) by more than 5%
  // (docs/planner.md lists them with the margins and the cost terms that
  // separate them: tp 8's all-reduces, 2(t-1)/t of the activations six times
  // per block, and its memory-bound passes replicated over the tp ranks).
  bool layout_miss = false;
  // Known TFLOP/s misses: predicted more than 15% above the published figure.
  bool tflops_miss = false;
  // The run as its script gives it (0: not published).
  struct Run {
    int micro_batch = 0;
    int chunks = 0;  // model chunks per stage: 1 = 1F1B, v > 1 interleaved
  } run = {};
};

// Table 1, with each row's run as examples/sc21/run_table_1.sh gives it:
// micro-batch size and model chunks per stage (its DDP implementation follows
// from pp, in request()).
const Row kTable1[] = {
    {1.7, 24, 2304, 24, 1, 1, 32, 512, 137, 0, -1, false, false, {16, 1}},
    {3.6, 32, 3072, 30, 2, 1, 64, 512, 138, 0, -1, false, false, {16, 1}},
    {7.5, 32, 4096, 36, 4, 1, 128, 512, 142, 0, -1, false, false, {16, 1}},
    {18.4, 48, 6144, 40, 8, 1, 256, 1024, 135, 0, -1, true, false, {8, 1}},
    {39.1, 64, 8192, 48, 8, 2, 512, 1536, 138, 0, -1, true, false, {4, 1}},
    {76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140, 0, -1, false, false, {2, 3}},
    {145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148, 0, -1, false, false, {2, 2}},
    {310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155, 0, -1, false, false, {1, 2}},
    {529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163, 0, -1, false, false, {1, 3}},
    {1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163, 0, -1, false, false, {1, 1}},
};

// Table 2: PTD-P rows, then the ZeRO-3 rows (model-parallel size 1).
const Row kTable2Ptdp[] = {
    {174.6, 96, 12288, 96, 8, 12, 384, 1536, 153, 1, -1, true},
    {174.6, 96, 12288, 96, 8, 12, 768, 1536, 149, 1, -1, true},
    {174.6, 96, 12288, 96, 8, 12, 1536, 1536, 141, 1, -1, true},
    {529.6, 128, 20480, 105, 8, 35, 560, 2240, 171, 1},
    {529.6, 128, 20480, 105, 8, 35, 1120, 2240, 167, 1}, {529.6, 128, 20480, 105, 8, 35, 2240, 2240, 159, 1},
};
const Row kTable2Zero3[] = {
    {174.6, 96, 12288, 96, 1, 1, 384, 1536, 144, 4, 3},  {174.6, 96, 12288, 96, 1, 1, 768, 1536, 88, 2, 3},
    {174.6, 96, 12288, 96, 1, 1, 1536, 1536, 44, 1, 3},  {529.6, 128, 20480, 105, 1, 1, 640, 2560, 138, 4, 3},
    {529.6, 128, 20480, 105, 1, 1, 1120, 2240, 98, 2, 3}, {529.6, 128, 20480, 105, 1, 1, 2240, 2240, 48, 1, 3},
};

constexpr int64_t kSeq = 2048, kVocab = 51200;
constexpr double kGiB = 1024.0 * 1024 * 1024;

// The A100 preset with Megatron 2021's kernels: attention materialising the
// scores, and its memory-bound kernels (Kernels::megatron_2021).
Hardware megatron_2021() {
  Hardware h = load_hardware("a100-80gb");
  h.fused_attention = false;
  h.kernels = Kernels::megatron_2021;
  h.tp_overlap = 0;
  return h;
}

PlanRequest request(const Row& r) {
  PlanRequest q;
  q.model = test::gpt(r.layers, r.hidden, r.heads, kVocab, kSeq);
  q.model.dropout = 0.1;  // Megatron's GPT: hidden dropout 0.1
  q.seq_len = kSeq;
  q.workload.global_batch = r.batch;
  q.workload.precision = "bf16";  // the paper trains in fp16: the same bytes and peak
  q.devices = r.gpus;
  q.hardware = megatron_2021();
  q.recompute = 2;
  q.max_idle_fraction = 0;
  // What Megatron-LM could run in 2021: interleaved 1F1B, full recomputation;
  // no sequence parallelism, no distributed optimizer (ZeRO) in Megatron
  // itself (the ZeRO-3 rows are DeepSpeed's). Without a pipeline, PyTorch's
  // DDP all-reduces the gradients during the last micro-batch's backward
  // (--DDP-impl torch; torch 1.8 in the scripts' NGC 20.12 container), with
  // buckets of its own: a second 16-bit copy of the gradients. With one,
  // Megatron's local DDP all-reduces them after the backward (training.py
  // asserts it for pp > 1). run_table_1.sh chooses exactly so: torch up to
  // 18B (pp 1), local from 39B (pp 2) on.
  q.features.sequence_parallel = false;
  q.features.selective = false;
  q.features.max_zero = r.zero >= 0 ? r.zero : 0;
  q.runnable = q.features;
  q.workload.overlap = r.zero != 3;
  q.features.overlap_without_pipeline_only = true;
  q.features.ddp_bucket_copy_bytes = 2;
  q.features.caching_allocator = true;  // PyTorch's caching allocator: one set in use at a time
  // Megatron-LM's pipeline: as many blocks per stage and per chunk (layers
  // divisible by pp, a stage's by v), interleaving from 3 stages on.
  q.features.uniform_blocks = true;
  q.features.min_interleaved_stages = 3;
  // Megatron-LM's mixed-precision optimizer casts every 16-bit gradient to a
  // new fp32 tensor for the update (Float16OptimizerWithFloat16Params).
  q.features.update_grad_copy_bytes = 4;
  // PyTorch's autograd adds each micro-batch's 16-bit weight gradients to
  // param.grad in place (read 2 + 2, write 2 bytes per parameter).
  q.features.grad_accumulation_bytes = 6;
  // Stage boundaries sent as 1/tp per tp rank and all-gathered (section 4.1).
  q.features.p2p_scatter_gather = true;
  // schedules.py keeps every output_tensor it sent until that micro-batch's
  // backward (deallocate_pipeline_outputs came in 2022).
  q.features.keeps_sent_outputs = true;
  // DeepSpeed's ZeRO-3 gathers and reduces per module: at most the largest Linear (4 h^2).
  if (r.zero == 3) {
    // DeepSpeed's ZeRO-3 of 2021 (v0.3.13-v0.5.4): a collective per gathered
    // parameter (biases and norms below the 1e5-element persistence threshold
    // stay whole, so about one per Linear, 4 h^2 at most); none of it behind
    // compute (a torch.cuda.synchronize() before each parameter's all-gather,
    // fetch_sub_module waiting for it, prefetching off: issue #1069, fixed by
    // PR #1188 in v0.5.5); the gradients reduce-scattered on a stream of
    // their own (overlap_comm, on by default for stage 3), behind the
    // backward as the hardware's other reductions; the remade forward's
    // parameters kept for the backward that follows (max_reuse_distance
    // 1e9); and its collectives at the rate v0.3.16 measured on one NVLink
    // node, 21.9 GB/s per GPU (Features::zero3_rate: issue #1174), not the
    // link's.
    q.features.zero_unit_params = 4.0 * r.hidden * r.hidden;
    q.features.zero3_overlap = 0;
    q.features.zero3_reduce_overlap = q.hardware.overlap;
    q.features.zero3_regather_remade = false;
    q.features.zero3_rate = 21.9e9;
    // DeepSpeed's ZeRO-3 example for Megatron's GPT of the time keeps the
    // checkpointed block inputs in host memory (--checkpoint-in-cpu:
    // Features::host_checkpoints), copied over the A100 preset's PCIe share.
    q.features.host_checkpoints = true;
  }
  if (r.micro_batch > 0) q.micro_batch = r.micro_batch;
  if (r.zero >= 0) q.zero = r.zero;
  return q;
}

// The paper's TFLOP/s per GPU for a predicted step.
double paper_tflops(const Row& r, double step_seconds, int devices) {
  const double B = r.batch, s = kSeq, l = r.layers, h = r.hidden, V = kVocab;
  const double flops = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
  return flops / step_seconds / devices / 1e12;
}

struct Outcome {
  bool layout_ok = false;  // (tp, pp) published, or the published layout within 5% of the pick
  // TFLOP/s predicted for the published run (its script's micro-batch and
  // schedule where published; else the planner's best for its (tp, pp)), and
  // over the published figure.
  double pick_tflops = 0, published_tflops = 0, ratio = 0;
  std::string pick;
};

Outcome check(const Row& r, bool free_layout) {
  PlanRequest q = request(r);
  Outcome o;
  const PlannedLayout* pick = nullptr;
  Plan free_plan;
  if (free_layout) {
    free_plan = make_plan(q);
    REQUIRE(!free_plan.feasible.empty());
    pick = &free_plan.feasible.front();
    o.pick = describe(pick->p.c);
    o.pick_tflops = paper_tflops(r, pick->p.step_seconds, pick->p.c.devices());
  }
  q.tp = r.tp;
  q.pp = r.pp;
  const Plan published = make_plan(q);
  INFO(nothing_fits(published));
  REQUIRE(!published.feasible.empty());
  const Prediction& p = published.feasible.front().p;
  auto breakdown = [](const char* what, const Prediction& x) {
    std::printf("   %s step %.3f s: pipeline %.3f (compute %.3f, memory-bound %.3f, tp %.3f, p2p %.3f, zero3 %.3f, "
                "host %.3f, bubble %.1f%%), dp %.3f, update %.3f; %s\n"
                "      memory of stage %d: %.1f GiB = params %.1f + grads %.1f + optimizer %.1f + max(activations %.1f, "
                "update copy %.1f), of %.1f usable\n",
                what, x.step_seconds, x.pipeline_seconds, x.compute_seconds, x.memory_bound_seconds, x.tp_seconds,
                x.pp_seconds, x.zero3_seconds, x.host_seconds, 100 * x.bubble_fraction, x.dp_exposed_seconds, x.optimizer_seconds,
                describe(x.c).c_str(), x.memory.stage, x.memory.total() / kGiB, x.memory.params / kGiB,
                x.memory.grads / kGiB, x.memory.optimizer / kGiB, x.memory.activations / kGiB,
                x.memory.update_copy / kGiB, x.capacity / kGiB);
  };
  breakdown("published:", p);
  if (pick && (pick->p.c.tp != r.tp || pick->p.c.pp != r.pp)) breakdown("pick:     ", pick->p);
  if (!pick) o.pick = describe(p.c);
  o.layout_ok = !free_layout || (pick->p.c.tp == r.tp && pick->p.c.pp == r.pp) ||
                p.step_seconds <= 1.05 * pick->p.step_seconds;
  // The published run itself, where its script gives it.
  Prediction run = p;
  if (r.run.micro_batch > 0) {
    q.micro_batch = r.run.micro_batch;
    q.schedule = r.run.chunks > 1 ? "interleaved" : "1f1b";
    q.virtual_stages = r.run.chunks > 1 ? r.run.chunks : 0;
    const Plan as_run = make_plan(q);
    INFO(nothing_fits(as_run));
    REQUIRE(!as_run.feasible.empty());
    run = as_run.feasible.front().p;
    breakdown("as run:   ", run);
    // The script's micro-batch and schedule are the planner's choice for
    // that (tp, pp), or predicted within 5% of it.
    CHECK(run.step_seconds <= 1.05 * p.step_seconds);
    std::printf("   the run as scripted: %+.1f%% against the planner's choice for its (tp, pp)\n",
                100 * (run.step_seconds / p.step_seconds - 1));
  }
  o.published_tflops = paper_tflops(r, run.step_seconds, run.c.devices());
  o.ratio = o.published_tflops / r.tflops;
  std::printf("%7.1fB %5d GPUs tp %d pp %2d: published %3.0f TFLOP/s, predicted %5.1f (%+5.1f%%)%s; pick %s, "
              "published layout %+.1f%% slower%s\n",
              r.billions, r.gpus, r.tp, r.pp, r.tflops, o.published_tflops, 100 * (o.ratio - 1),
              r.run.micro_batch > 0 ? " as run" : "", o.pick.c_str(),
              pick ? 100 * (p.step_seconds / pick->p.step_seconds - 1) : 0.0,
              o.layout_ok ? "" : "  [layout differs by > 5%]");
  return o;
}

}  // namespace

TEST_CASE("Megatron-LM SC21 Table 1: published (tp, pp) or within 5%, TFLOP/s per GPU within 15%") {
  int layouts = 0, within = 0;
  for (const Row& r : kTable1) {
    CAPTURE(r.billions);
    const Outcome o = check(r, true);
    CHECK(o.layout_ok == !r.layout_miss);
    CHECK((std::abs(o.ratio - 1) <= 0.15) == !r.tflops_miss);
    layouts += o.layout_ok;
    within += std::abs(o.ratio - 1) <= 0.15;
  }
  std::printf("Table 1: layout %d/10, TFLOP/s within 15%% %d/10\n", layouts, within);
}

TEST_CASE("Megatron-LM SC21 Table 2, PTD-P rows: TFLOP/s per GPU within 15%") {
  int layouts = 0, within = 0;
  for (const Row& r : kTable2Ptdp) {
    CAPTURE(r.billions);
    CAPTURE(r.gpus);
    const Outcome o = check(r, true);
    CHECK(o.layout_ok == !r.layout_miss);
    CHECK((std::abs(o.ratio - 1) <= 0.15) == !r.tflops_miss);
    layouts += o.layout_ok;
    within += std::abs(o.ratio - 1) <= 0.15;
  }
  std::printf("Table 2 PTD-P: layout %d/6, TFLOP/s within 15%% %d/6\n", layouts, within);
}

TEST_CASE("Megatron-LM SC21 Table 2, ZeRO-3 rows (DeepSpeed, no model parallelism)") {
  // DeepSpeed 2021's ZeRO-3 as request() describes it: its gathers at the
  // rate it measured on one NVLink node (21.9 GB/s per GPU, where NCCL's
  // rings would give this group 8 ports', about 176 GB/s), none of them
  // behind compute, a ring latency per gathered Linear, the reduce-scatters
  // behind the backward, the checkpointed block inputs in host memory. The
  // published steps stay flat (81, 66, 66 s for 175B at 384, 768, 1536 GPUs)
  // as the compute per GPU halves: the 6P bytes per GPU per step at that
  // rate, 48 s for 175B, and what the compute adds beyond the reductions it
  // hides. Before zero3_rate (2026-12-06) every row was predicted 1.3-2.5x
  // the published figure. 530B at 640 GPUs (micro-batch 4) fits only with the
  // checkpoints on the host: on the device its 105 checkpointed block inputs
  // of 4 x 2048 x 20480 fp16 (32.8 GiB) would bring it to 78.8 GiB of the
  // preset's 72 usable.
  int within = 0;
  for (const Row& r : kTable2Zero3) {
    CAPTURE(r.billions);
    CAPTURE(r.gpus);
    const Outcome o = check(r, false);
    // Predicted over published, row by row, so that a change that moves one shows.
    const double expected = r.billions < 500 ? (r.gpus == 384 ? 0.891 : r.gpus == 768 ? 1.008 : 1.028)
                                             : (r.gpus == 640 ? 0.970 : r.gpus == 1120 ? 0.951 : 1.021);
    CHECK(o.ratio == doctest::Approx(expected).epsilon(0.03));
    within += std::abs(o.ratio - 1) <= 0.15;
  }
  CHECK(within == 6);
  std::printf("Table 2 ZeRO-3: TFLOP/s within 15%% %d/6\n", within);
  // On the device the 530B row at 640 GPUs does not fit: memory binds.
  PlanRequest q = request(kTable2Zero3[3]);
  q.features.host_checkpoints = false;
  q.runnable = q.features;
  q.tp = q.pp = 1;
  const Plan on_device = make_plan(q);
  CHECK(on_device.feasible.empty());
  CHECK(nothing_fits(on_device, 1).find("memory binds first") != std::string::npos);
}

TEST_CASE("Megatron-LM SC21 Figure 13: at 64 GPUs tp 8 x pp 8 beats (4, 16) and (2, 32)") {
  // Narayanan et al. 2021, section 5.4.1 and Figure 13: a 162.2B GPT (32
  // blocks, so that pp can reach 32; 128 heads, width 20480) on 64 A100s, no
  // data parallelism, global batches of 32 and 128; of (tp, pp) = (2, 32),
  // (4, 16), (8, 8), (16, 4), (32, 2) the measured best was (8, 8), with tp
  // 16 and 32 (across nodes) far behind. The planner rejects tp beyond a node;
  // over the other three it must rank as measured, at both batch sizes, as
  // run (1F1B) and with the interleaved schedule allowed.
  // The figure's TFLOP/s are not asserted: only read off a plot.
  // examples/sc21/run_figure_13.sh ran them 1F1B with micro-batches of 1.
  for (int batch : {32, 128})
    for (bool interleaved : {false, true}) {
      CAPTURE(batch);
      CAPTURE(interleaved);
      const Row r{162.2, 128, 20480, 32, 8, 8, 64, batch, 0};
      double step[3] = {};
      const int tps[3] = {2, 4, 8};
      for (int i = 0; i < 3; ++i) {
        PlanRequest q = request(r);
        q.features.interleaved = interleaved;
        q.runnable = q.features;
        if (!interleaved) q.micro_batch = 1;  // as run
        q.tp = tps[i];
        q.pp = 64 / tps[i];
        const Plan p = make_plan(q);
        INFO(nothing_fits(p));
        REQUIRE(!p.feasible.empty());
        step[i] = p.feasible.front().p.step_seconds;
        std::printf("Figure 13, batch %3d%s: tp %d pp %2d predicted %5.1f TFLOP/s (%s)\n", batch,
                    interleaved ? ", interleaving allowed" : "", tps[i], 64 / tps[i],
                    paper_tflops(r, step[i], 64), describe(p.feasible.front().p.c).c_str());
      }
      CHECK(step[2] < step[1]);
      CHECK(step[1] < step[0]);
    }
  // Across nodes: tp 16 is not a candidate.
  PlanRequest q = request(Row{162.2, 128, 20480, 32, 16, 4, 64, 128, 0});
  q.tp = 16;
  q.pp = 4;
  CHECK(make_plan(q).feasible.empty());
}

TEST_CASE("1T parameters on 10,000 devices: a plan in under a second, leaving a few devices idle") {
  const Row r{1008.0, 160, 25600, 128, 8, 64, 10000, 3072, 163};
  PlanRequest q = request(r);
  q.hardware = load_hardware("h100-sxm");
  q.features = q.runnable = Features::this_trainer();
  q.recompute = -1;
  q.max_idle_fraction = 0.02;
  // The planner's own CPU time (std::clock: it runs on one thread), so that
  // other processes on a loaded machine do not count.
  const std::clock_t c0 = std::clock();
  const Plan p = make_plan(q);
  const double cpu_seconds = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  REQUIRE(!p.feasible.empty());
  CHECK(cpu_seconds < 1.0);
  const int used = p.feasible[0].p.c.devices();
  CHECK(used < 10000);
  CHECK(used >= 9800);
  MESSAGE("1T on 10,000 H100s: " << describe(p.feasible[0].p.c) << " on " << used << " devices, planned in "
                                 << p.seconds * 1e3 << " ms (" << cpu_seconds * 1e3 << " ms of CPU)");
  q.max_idle_fraction = 0;  // every device: 10,000 = 2^4 x 5^4
  const Plan all = make_plan(q);
  if (!all.feasible.empty()) CHECK(all.feasible[0].p.step_seconds >= p.feasible[0].p.step_seconds);
}
