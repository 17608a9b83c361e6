// Acceptance, a second published source checked the way megatron_test.cpp
// checks the SC21 paper: another GPU, another runtime, three years later.
// Source: NVIDIA Megatron-LM README, "Training Speed and Scalability" (commit
// f2e5db402c of 2024-07-15, "New scaling figures on H100 GPUs",
// images/model_table.png): Megatron-Core r0.8.0, GPT models of 1.7B to 462B
// parameters on 48 to 6144 H100 SXM 80 GB (DGX H100), vocabulary 131,072,
// sequence 4096, data-parallel size 48 throughout; per row the published
// tensor- and pipeline-parallel sizes, global batch and TFLOP/s per GPU,
// counted by training.py's num_floating_point_operations (no recomputation
// counted; the logits' 6 B s h V). The README gives the runtime: data-parallel
// communication overlapped (--overlap-grad-reduce, --overlap-param-gather:
// the distributed optimizer), tensor-parallel communication overlapped
// (--tp-comm-overlap, which needs sequence parallelism), pipeline
// communication overlapped (interleaved, the default). It does not give the
// micro-batch, the virtual stages or the recomputation: the planner chooses
// them for the published (tp, pp), as the SC21 check did before the authors'
// scripts were found.
//
// The runtime, from Megatron-Core r0.8's code and nothing fitted to these rows:
// - Transformer Engine's fused attention (flash-style: no scores kept, the
//   causal mask's upper tiles skipped) and memory-bound kernels
//   (Kernels::megatron_core, counted in model_profile.cpp); what it keeps for
//   the backward is Korthikanti et al. 2022's count.
// - tp communication hidden behind the products at the fraction the preset
//   uses for the dp overlap (0.9): TE's userbuffers run each all-gather and
//   reduce-scatter in chunks under the product that consumes or produces it.
// - The distributed optimizer (ZeRO-1 with a reduce-scatter), gradients kept
//   and reduced in fp32 (main_grad), parameters all-gathered during the next
//   forward, buckets of max(4e7, 1e6 dp) parameters, interleaved each
//   chunk's reduction started once its last micro-batch has gone backward
//   (schedules.py's grad_sync_func per model chunk); weight gradients
//   accumulated by the products (gradient_accumulation_fusion); sent
//   outputs freed once sent; PyTorch's caching allocator; the same number of
//   blocks per stage and chunk, interleaving from 2 stages (with
//   overlap_p2p_comm); hidden and attention dropout 0.1 (the defaults).
// These models' embeddings are untied (their parameter counts say so: 1.75B
// at 1.7B): model.tie_embeddings = false, an output head of its own (V h
// parameters more: 15% at 1.7B, 1% at 177B; no gradient sum between the
// first and last pipeline stages). Planned tied, as before 2026-12-06, 1.7B
// was +15.2% and 7.1B's pick tp 1 at dp 96.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>

#include "parallel/planner.h"

#include "parallel/gpt_config.h"

using namespace dtrain;

namespace {

struct Row {
  double billions;
  int heads, hidden, layers, tp, pp, gpus, batch;
  double tflops;
  // Known misses, asserted as such (see the test's comment).
  bool layout_miss = false, tflops_miss = false;
};

constexpr int64_t kSeq = 4096, kVocab = 131072;

// TFLOP/s: five known misses at +17.2% to +22.5% (docs/planner.md,
// "Megatron-Core r0.8 on H100"); 1.7B (+14.8%, since the head is untied as the
// source's is), 16B, 32B and 314B within 15%, the last three since the SMs
// that hidden collectives hold are charged to the products beside them
// (Hardware::comm_compute_share: NCCL's 16 channels, TE's pipelined and bulk
// overlaps on 16 SMs; every row was +16.0% to +25.2% before). The H100's
// products run at the sustained rate measured on the lent H200 (the same chip
// and power limit): each row's block products at 0.67-0.71 of peak,
// reproduced by the preset's curve within 3.2% (planner_test, "the h200
// preset's products are the rates measured on an H200"); with the short-run
// 0.8 every row was 20-34% high. Every layout is the published one or within
// 5% (70B's since each chunk's gradient reduction starts with its own last
// backward, as r0.8's interleaved schedule does; 32B's pick, tp 4, is 4.9%
// ahead of tp 8, on the edge).
const Row kRows[] = {
    {1.7, 16, 2048, 24, 1, 1, 48, 192, 408.8, false, false},
    {7.1, 32, 4096, 30, 2, 1, 96, 192, 465.9, false, true},
    {16, 48, 6144, 32, 4, 1, 192, 192, 489.1, false, false},
    {32, 56, 7168, 48, 8, 1, 384, 192, 459.6, false, false},
    {70, 64, 8192, 84, 8, 2, 768, 384, 419.7, false, true},
    {119, 80, 10240, 92, 8, 4, 1536, 768, 420.5, false, true},
    {177, 96, 12288, 96, 8, 6, 2304, 1152, 432.8, false, true},
    {314, 128, 16384, 96, 8, 8, 3072, 1536, 474.4, false, false},
    {462, 144, 18432, 112, 8, 16, 6144, 3072, 459.9, false, true},
};

Hardware megatron_core_h100() {
  Hardware h = load_hardware("h100-sxm");
  h.fused_attention = true;
  h.kernels = Kernels::megatron_core;
  h.tp_overlap = h.overlap;
  // Transformer Engine's userbuffers (v1.7-1.8): the ring exchanges move
  // half a block's tp traffic with the copy engines, the pipelined and bulk
  // overlaps the other half on 16 SMs.
  h.tp_comm_compute_share = 0.5 * 16.0 / 132;
  return h;
}

PlanRequest request(const Row& r) {
  PlanRequest q;
  q.model = test::gpt(r.layers, r.hidden, r.heads, kVocab, kSeq);
  q.model.dropout = 0.1;
  q.model.tie_embeddings = false;
  q.seq_len = kSeq;
  q.workload.global_batch = r.batch;
  q.workload.precision = "bf16";
  q.workload.bucket_bytes = 4.0 * std::max(4e7, 1e6 * 48);  // fp32 gradients
  q.devices = r.gpus;
  q.hardware = megatron_core_h100();
  q.max_idle_fraction = 0;
  Features& f = q.features;
  f = Features::full();
  f.max_zero = 1;  // the distributed optimizer
  f.zero1_reduce_scatter = true;
  f.grad_bytes = 4;
  f.overlap_param_gather = true;
  f.grad_sync_per_chunk = true;
  f.caching_allocator = true;
  f.uniform_blocks = true;
  f.min_interleaved_stages = 2;
  f.p2p_scatter_gather = true;
  f.sp_regather_after_recompute = true;  // the slice saved, gathered in every backward
  q.runnable = f;
  q.zero = 1;
  return q;
}

// training.py's num_floating_point_operations for a GPT with a 4h MLP.
double paper_tflops(const Row& r, double step_seconds) {
  const double B = r.batch, s = kSeq, l = r.layers, h = r.hidden, V = kVocab;
  const double flops = 12 * B * s * l * h * h * (2 + s / h + 4 + V / (2 * l * h));
  return flops / step_seconds / r.gpus / 1e12;
}

}  // namespace

TEST_CASE("Megatron-Core r0.8 on H100 (README, 2024): published (tp, pp) or within 5%, TFLOP/s within 15%") {
  int layouts = 0, within = 0;
  for (const Row& r : kRows) {
    CAPTURE(r.billions);
    PlanRequest q = request(r);
    const Plan free_plan = make_plan(q);
    INFO(nothing_fits(free_plan));
    REQUIRE(!free_plan.feasible.empty());
    const Prediction& pick = free_plan.feasible.front().p;
    q.tp = r.tp;
    q.pp = r.pp;
    const Plan published = make_plan(q);
    INFO(nothing_fits(published));
    REQUIRE(!published.feasible.empty());
    const Prediction& p = published.feasible.front().p;
    CHECK(p.c.dp == 48);
    const bool layout_ok = (pick.c.tp == r.tp && pick.c.pp == r.pp) || p.step_seconds <= 1.05 * pick.step_seconds;
    const double ratio = paper_tflops(r, p.step_seconds) / r.tflops;
    std::printf("%6.1fB %5d H100s tp %d pp %2d: published %5.1f TFLOP/s, predicted %5.1f (%+5.1f%%) with %s; "
                "step %.3f s = pipeline %.3f (compute %.3f, memory-bound %.3f, tp %.3f, p2p %.3f, bubble %.1f%%) "
                "+ dp %.3f + update %.3f; memory %.1f GiB; pick %s, published layout %+.1f%%%s\n",
                r.billions, r.gpus, r.tp, r.pp, r.tflops, paper_tflops(r, p.step_seconds), 100 * (ratio - 1),
                describe(p.c).c_str(), p.step_seconds, p.pipeline_seconds, p.compute_seconds, p.memory_bound_seconds,
                p.tp_seconds, p.pp_seconds, 100 * p.bubble_fraction, p.dp_exposed_seconds, p.optimizer_seconds,
                p.memory.total() / (1024.0 * 1024 * 1024), describe(pick.c).c_str(),
                100 * (p.step_seconds / pick.step_seconds - 1), layout_ok ? "" : "  [layout differs by > 5%]");
    CHECK(layout_ok == !r.layout_miss);
    CHECK((std::abs(ratio - 1) <= 0.15) == !r.tflops_miss);
    layouts += layout_ok;
    within += std::abs(ratio - 1) <= 0.15;
  }
  std::printf("Megatron-Core r0.8 on H100: layout %d/9, TFLOP/s within 15%% %d/9\n", layouts, within);
}

TEST_CASE("Megatron-Core r0.8 on H100: the runtime's description is what separates it from this trainer") {
  // The same 462B row planned for this trainer's features on the plain
  // preset (materialised attention, no tp overlap, bf16 gradients, its own
  // activation count) needs recomputation where Megatron-Core runs without:
  // what it keeps per block is about 3x Korthikanti's count.
  const Row& r = kRows[8];
  PlanRequest q = request(r);
  q.tp = r.tp;
  q.pp = r.pp;
  q.recompute = 0;
  const Plan core = make_plan(q);
  REQUIRE(!core.feasible.empty());
  q.hardware = load_hardware("h100-sxm");
  q.features = q.runnable = Features::this_trainer();
  q.zero = -1;
  const Plan ours = make_plan(q);
  CHECK(ours.feasible.empty());
}
