// The cost model's formulas against hand-computed cases: collectives
// (alpha-beta ring and tree), bytes of state per parameter (ZeRO paper), the
// pipeline time (m - 1) max + sum and its bubble, recomputation's extra
// forward, the data-parallel reduction hidden behind the backward, memory per
// device with ZeRO-1 and 1F1B's in-flight micro-batches, and the model
// profile read from the layers' own costs (with their tp all-reduces).
#include <doctest/doctest.h>

#include <chrono>

#include "core/rng.h"
#include "kernels/cuda/attention_layout.h"
#include "model/model.h"
#include "ops/ops.h"
#include "parallel/cost_model.h"
#include "parallel/model_profile.h"
#include "parallel/pipeline.h"

#include "parallel/gpt_config.h"

using namespace dtrain;

namespace {

using test::gpt;

// Round numbers: 1 TFLOP/s achieved (peak 2, efficiency 0.5), links of 1 GB/s
// and 10 us, 1 GB/s of memory bandwidth, no per-layer overhead.
Hardware toy_hardware(int per_node = 8) {
  Hardware h;
  h.name = "toy";
  h.memory_bytes = 1e12;
  h.usable_memory_fraction = 1;
  h.peak_fp32 = 2e12;
  h.efficiency = 0.5;
  h.memory_bandwidth = 1e9;
  h.devices_per_node = per_node;
  h.intra = {1e9, 10e-6};
  h.inter = {1e9, 10e-6};
  h.overlap = 1;
  return h;
}

// Two identical layers of 1 GFLOP forward and 2 GFLOP backward per sample,
// 1000 parameters, 1 MB of activations, 1 KB at the output.
ModelProfile toy_profile(int layers = 2) {
  ModelProfile m;
  m.kind = "gpt";
  m.items_per_sample = 100;
  for (int i = 0; i < layers; ++i) {
    LayerProfile l;
    l.name = "layer" + std::to_string(i);
    l.params = 1000;
    l.fwd_flops = 1e9;
    l.bwd_flops = 2e9;
    l.act_bytes = 1e6;
    l.in_bytes = 1e3;
    l.out_bytes = 1e3;
    l.block = true;
    m.layers.push_back(l);
  }
  m.total_params = 1000.0 * layers;
  m.model_flops_per_sample = 3e9 * layers;
  return m;
}

}  // namespace

TEST_CASE("a group's link across nodes: k members per node share one crossing, k x the port, at most the node's link") {
  Hardware hw;
  hw.devices_per_node = 8;
  hw.intra = {230e9, 3e-6};
  hw.inter = {22e9, 6e-6};
  CHECK(hw.group_link(1, 8).bandwidth == hw.intra.bandwidth);  // one node
  CHECK(hw.group_link(2, 4).bandwidth == hw.intra.bandwidth);
  CHECK(hw.group_link(8, 4).bandwidth == doctest::Approx(22e9));  // tp 8: one member per node
  CHECK(hw.group_link(16, 4).bandwidth == doctest::Approx(22e9));
  CHECK(hw.group_link(4, 8).bandwidth == doctest::Approx(44e9));   // tp 4: two per node
  CHECK(hw.group_link(2, 8).bandwidth == doctest::Approx(88e9));   // tp 2: four per node
  CHECK(hw.group_link(1, 384).bandwidth == doctest::Approx(176e9));
  CHECK(hw.group_link(1, 12).bandwidth == doctest::Approx(88e9));  // 8 in one node, 4 in the next: the 4 bind
  CHECK(hw.group_link(1, 384).latency == hw.inter.latency);
  hw.inter.bandwidth = 40e9;  // 8 x 40 is more than the node's own link carries
  CHECK(hw.group_link(1, 384).bandwidth == doctest::Approx(230e9));
  // Ranks sharing one machine (the CPU presets): every group inside the node.
  hw.devices_per_node = 4;
  CHECK(hw.group_link(1, 4).bandwidth == hw.intra.bandwidth);
}

TEST_CASE("collectives: alpha-beta ring, tree, gather and p2p") {
  const Link l{1e9, 10e-6};
  // Ring: 2(n-1) a + 2(n-1)/n S/B = 60 us + 1.5 ms for 1 MB on 4 ranks.
  CHECK(ring_all_reduce_seconds(1e6, 4, l) == doctest::Approx(60e-6 + 1.5e-3));
  // Tree: 2 log2(n) a + 2 S/B = 40 us + 2 ms: the ring wins for big messages.
  CHECK(tree_all_reduce_seconds(1e6, 4, l) == doctest::Approx(40e-6 + 2e-3));
  CHECK(all_reduce_seconds(1e6, 4, l) == doctest::Approx(1.56e-3));
  // Small messages on many ranks: latency decides, and the tree has fewer steps.
  CHECK(all_reduce_seconds(8, 1024, l) == doctest::Approx(tree_all_reduce_seconds(8, 1024, l)));
  CHECK(tree_all_reduce_seconds(8, 1024, l) == doctest::Approx(20 * 10e-6 + 16e-9));
  CHECK(all_gather_seconds(1e6, 4, l) == doctest::Approx(30e-6 + 0.75e-3));
  CHECK(p2p_seconds(1e6, l) == doctest::Approx(10e-6 + 1e-3));
  CHECK(all_reduce_seconds(1e9, 1, l) == 0);
}

TEST_CASE("state bytes per parameter (ZeRO paper: mixed-precision Adam is 2 + 2 + 12)") {
  Workload w;
  StateBytes b = state_bytes(w);  // fp32 AdamW
  CHECK(b.params == 4);
  CHECK(b.grads == 4);
  CHECK(b.optimizer == 8);
  CHECK(b.update_traffic == 28);
  w.precision = "bf16";
  b = state_bytes(w);
  CHECK(b.params + b.grads + b.optimizer == 16);
  CHECK(b.optimizer == 12);
  w.precision = "fp32";
  w.optimizer = "sgd";
  CHECK(state_bytes(w).optimizer == 4);
  w.momentum = false;
  CHECK(state_bytes(w).optimizer == 0);
}

TEST_CASE("in-flight micro-batches are what the trainer's schedules hold") {
  for (int stages : {1, 2, 3, 4, 8})
    for (int m : {1, 2, 3, 5, 8, 13})
      for (int s = 0; s < stages; ++s)
        for (const char* sched : {"1f1b", "gpipe"}) {
          if (stages == 1 && std::string(sched) == "gpipe") continue;
          CAPTURE(stages);
          CAPTURE(m);
          CAPTURE(s);
          CAPTURE(sched);
          CHECK(in_flight_micro_batches(sched, s, stages, m) == in_flight(pipeline_schedule(sched, s, stages, m)));
        }
}

TEST_CASE("step time: pipeline (m - 1) max + sum, bubble (p - 1)/m, recomputation's extra forward") {
  const ModelProfile m = toy_profile(2);
  const Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  const Features f = Features::full();
  // One stage, 4 micro-batches of 2: per micro-batch 2 x (1 + 2) GFLOP x 2 samples = 12 ms.
  Candidate one{.dp = 1, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 4};
  Prediction p = predict(m, profile_stages(m, 1), hw, w, f, one);
  CHECK(p.pipeline_seconds == doctest::Approx(4 * 12e-3));
  CHECK(p.bubble_fraction == doctest::Approx(0));
  CHECK(p.compute_seconds == doctest::Approx(48e-3));
  // Update: 2000 params x (28 + 2 x 4) bytes at 1 GB/s.
  CHECK(p.optimizer_seconds == doctest::Approx(2000 * 36 / 1e9));
  CHECK(p.step_seconds == doctest::Approx(p.pipeline_seconds + p.optimizer_seconds));
  CHECK(p.tokens_per_second == doctest::Approx(8 * 100 / p.step_seconds));
  CHECK(p.mfu == doctest::Approx(8 * 6e9 / (p.step_seconds * 1 * 2e12)));

  // Two stages of one layer: 6 ms of compute plus one 2 KB transfer each
  // way (10 us + 2 us), (m - 1) x max + sum; ideal bubble (p - 1)/m = 1/4.
  Candidate two = one;
  two.pp = 2;
  p = predict(m, profile_stages(m, 2), hw, w, f, two);
  const double stage = 6e-3 + 12e-6;
  CHECK(p.pipeline_seconds == doctest::Approx(3 * stage + 2 * stage));
  CHECK(p.ideal_bubble == doctest::Approx(0.25));
  CHECK(p.bubble_fraction == doctest::Approx(1 - 4.0 / 5.0));

  // Recomputation runs every forward twice: per layer and sample 1 + 2 + 1 GFLOP.
  Candidate rc = one;
  rc.recompute = Recompute::full;
  p = predict(m, profile_stages(m, 1), hw, w, f, rc);
  CHECK(p.pipeline_seconds == doctest::Approx(4 * 16e-3));

  // Only the transformer blocks run their forward again: a head that is not a
  // block keeps its activations (lib/model/block.cpp; Megatron-LM's and
  // DeepSpeed's checkpointing wrap the blocks alone). Per micro-batch of 2:
  // the block 2 x (1 + 2 + 1) GFLOP, the head 2 x (1 + 2) GFLOP, at 1 TFLOP/s.
  ModelProfile headed = m;
  headed.layers.back().block = false;
  p = predict(headed, profile_stages(headed, 1), hw, w, f, rc);
  CHECK(p.pipeline_seconds == doctest::Approx(4 * 14e-3));
  CHECK(p.compute_seconds == doctest::Approx(4 * 14e-3));
}

TEST_CASE("data-parallel reduction: hidden behind the last backward, the last bucket never") {
  ModelProfile m = toy_profile(2);
  for (LayerProfile& l : m.layers) l.params = 5e6;  // 40 MB of fp32 gradients in all
  Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  w.bucket_bytes = 4e6;
  const Features f = Features::full();
  Candidate c{.dp = 2, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 2};
  const double reduce = all_reduce_seconds(40e6, 2, hw.intra);  // ~40 ms
  const double backward = 2 * 2 * 2e9 / 1e12;                   // 8 ms
  Prediction p = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(p.dp_exposed_seconds == doctest::Approx(reduce - backward));
  hw.overlap = 0;
  p = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(p.dp_exposed_seconds == doctest::Approx(reduce));
  // A reduction shorter than the backward still ends with its last bucket.
  for (LayerProfile& l : m.layers) l.params = 1e5;
  hw.overlap = 1;
  p = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(p.dp_exposed_seconds == doctest::Approx(all_reduce_seconds(0.8e6, 2, hw.intra)));
  // Groups wider than a node use the inter-node link.
  hw = toy_hardware(1);
  hw.inter = {0.5e9, 10e-6};
  hw.overlap = 0;
  p = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(p.dp_exposed_seconds == doctest::Approx(all_reduce_seconds(0.8e6, 2, hw.inter)));
}

TEST_CASE("memory per device: parameters, gradients, ZeRO-1 optimizer shard, 1F1B activations") {
  const ModelProfile m = toy_profile(4);
  const Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 64;
  const Features f = Features::full();
  Candidate c{.dp = 2, .tp = 1, .pp = 2, .micro_batch = 4, .micro_batches = 8};
  Prediction p = predict(m, profile_stages(m, 2), hw, w, f, c);
  // Stage 0 (two layers) holds pp - 0 = 2 micro-batches of 4 samples: 2 x 4 x 2 MB,
  // and the output each sends (1 KB per sample; the next stage's layer counts
  // it as its input); once, the step loop's buffer for the gradient it
  // receives (1 KB per sample).
  CHECK(p.memory.stage == 0);
  CHECK(p.memory.params == 2000 * 4);
  CHECK(p.memory.grads == 2000 * 4);
  CHECK(p.memory.optimizer == 2000 * 8);
  CHECK(p.memory.activations == 2 * 4 * (2e6 + 1e3) + 4 * 1e3);
  c.zero = 1;
  CHECK(predict(m, profile_stages(m, 2), hw, w, f, c).memory.optimizer == 1000 * 8);
  // ZeRO-2: the gradients too fall to 1/dp, plus two windows of the largest layer's.
  c.zero = 2;
  const Prediction z2 = predict(m, profile_stages(m, 2), hw, w, f, c);
  CHECK(z2.memory.optimizer == 1000 * 8);
  CHECK(z2.memory.grads == (1000 + 2 * 1000) * 4);
  CHECK(z2.dp_bytes > predict(m, profile_stages(m, 2), hw, w, f, Candidate{.dp = 2, .tp = 1, .pp = 2, .micro_batch = 4, .micro_batches = 8, .zero = 1}).dp_bytes);
  // ZeRO-3: the parameters too, 1/dp plus two gather windows; per micro-batch
  // two gathers and one reduce-scatter: 1.5x plain dp's all-reduce bytes at
  // one micro-batch.
  c.zero = 3;
  const Prediction z3 = predict(m, profile_stages(m, 2), hw, w, f, c);
  CHECK(z3.memory.params == (1000 + 2 * 1000) * 4);
  CHECK(z3.memory.grads == z2.memory.grads);
  CHECK(z3.memory.optimizer == 1000 * 8);
  {
    Candidate one{.dp = 4, .tp = 1, .pp = 1, .micro_batch = 4, .micro_batches = 1};
    Workload w1 = w;
    w1.global_batch = 16;
    const double plain = predict(m, profile_stages(m, 1), hw, w1, f, one).dp_bytes;
    one.zero = 3;
    const Prediction p3 = predict(m, profile_stages(m, 1), hw, w1, f, one);
    CHECK(p3.dp_bytes == doctest::Approx(1.5 * plain));
    CHECK(p3.memory.params == (1000 + 2 * 1000) * 4);  // 4000 / 4 + two 1000-element windows
  }
  c.zero = 1;
  c.schedule = "gpipe";  // all 8 micro-batches in flight
  // On both stages each copy keeps 1 KB per sample more: stage 0 the output
  // it sends, stage 1 (its blocks' shared work buffers, none here) its own
  // copy of the input gradient it sends back. Stage 0 also has its received
  // gradient's buffer.
  CHECK(predict(m, profile_stages(m, 2), hw, w, f, c).memory.activations == 8 * 4 * (2e6 + 1e3) + 4 * 1e3);
  // Recomputation keeps each layer's input per micro-batch, plus one layer's
  // activations while it is recomputed, once per stage (lib/train's copies
  // share them, each keeping its own copy of the output it sends, as a
  // caching allocator need not).
  c.schedule = "1f1b";
  c.recompute = Recompute::full;
  CHECK(predict(m, profile_stages(m, 2), hw, w, f, c).memory.activations == 2 * 4 * (2e3 + 1e3) + 4 * 1e6 + 4 * 1e3);
  Features shared = f;
  shared.caching_allocator = true;
  CHECK(predict(m, profile_stages(m, 2), hw, w, shared, c).memory.activations == 2 * 4 * 2e3 + 4 * 1e6);
  // bf16: half the activation bytes; parameters 2 + 2 + 12 bytes.
  c.recompute = Recompute::none;
  c.zero = 0;
  w.precision = "bf16";
  Hardware bf = hw;
  bf.peak_bf16 = 4e12;
  p = predict(m, profile_stages(m, 2), bf, w, f, c);
  CHECK(p.memory.activations == 2 * 4 * (1e6 + 500) + 4 * 500);
  CHECK(p.memory.total() - p.memory.activations == 2000 * 16);
}

TEST_CASE("model profile: costs from the layers, per sample and tp rank, with their tp all-reduces") {
  const ModelConfig cfg = gpt(2, 64, 4, 256, 32);
  const ModelProfile one = profile_model(cfg, 32, 1);
  auto whole = describe_model(cfg, 32);
  const std::vector<Cost> costs = whole->layer_costs(1);
  REQUIRE(one.layers.size() == 5);  // embed, 2 blocks, ln_f, head (+ loss folded in)
  CHECK(one.layers[1].fwd_flops == costs[1].fwd_flops);
  CHECK(one.layers[4].fwd_flops == costs[4].fwd_flops + costs[5].fwd_flops);
  CHECK(one.total_params == static_cast<double>(whole->cost(1).params));
  CHECK(one.layers[1].tp_fwd_calls == 0);
  const double T = 32, C = 64, h = 4, t = 2;
  // One block's activations (fp32): 16 C + 16 + 48 C/t bytes per token plus
  // the probabilities 4 h T^2 / t (Korthikanti et al.'s sbh(10 + 24/t) + 5as^2b/t
  // for 16-bit Megatron with attention dropout; this block has none).
  const ModelProfile two = profile_model(cfg, 32, 2);
  // dtrain also holds the two projections' outputs (8 C per token) that the
  // residual dropouts read.
  CHECK(two.layers[1].act_bytes == T * (24 * C + 16 + 48 * C / t) + 4 * h * T * T / t);
  CHECK(one.layers[1].act_bytes == T * (24 * C + 16 + 48 * C) + 4 * h * T * T);
  // Megatron's f and g: two all-reduces of (T, C) forward, two backward.
  CHECK(two.layers[1].tp_fwd_calls == 2);
  CHECK(two.layers[1].tp_bwd_calls == 2);
  CHECK(two.layers[1].tp_fwd_bytes == 2 * T * C * 4);
  CHECK(two.layers[1].tp_bwd_bytes == 2 * T * C * 4);
  CHECK(two.layers[0].tp_fwd_calls == 1);  // vocabulary-parallel embedding
  CHECK(two.layers[4].tp_bwd_calls == 1);  // the head's input gradient
  CHECK(two.layers[4].tp_fwd_calls == 3);  // the cross-entropy's maxima, sums, argmax
  CHECK(two.total_params == one.total_params);
  CHECK(two.model_flops_per_sample == one.model_flops_per_sample);
  CHECK(two.tied_params == 256 * 64 / 2);
  // Stages as the trainer cuts them; the last holds a copy of the tied embedding.
  const std::vector<StageProfile> st = profile_stages(one, 2);
  REQUIRE(st.size() == 2);
  CHECK(st[0].first_layer == 0);
  CHECK(st[1].last_layer == 5);
  CHECK(st[1].holds_tied_copy);
  double params = 0;
  for (const StageProfile& s : st) params += s.params;
  CHECK(params == one.total_params + one.tied_params);
  CHECK_THROWS_AS(profile_model(cfg, 32, 3), ConfigError);  // 4 heads over 3 ranks
}

TEST_CASE("model profile: memory-bound bytes per token as each backend's kernels move them") {
  // h = 64, 4 heads, 32 tokens, tp 2, dropout on: elements per token times 4
  // bytes (a mask counted as half an element), docs/planner.md.
  ModelConfig cfg = gpt(2, 64, 4, 256, 32);
  cfg.dropout = 0.1;
  const double T = 32, h = 64, t = 2, a = 4, V = 256;
  const ModelProfile per_op = profile_model(cfg, 32, 2, false, Kernels::per_op);
  const ModelProfile cuda = profile_model(cfg, 32, 2, false, Kernels::dtrain_cuda);
  const ModelProfile mega = profile_model(cfg, 32, 2, false, Kernels::megatron_2021);
  const LayerProfile &p = per_op.layers[1], &c = cuda.layers[1], &m = mega.layers[1];
  // Every operation its own pass: 16 h replicated + GELU's 8 h/t forward, 16 h + 12 h/t backward.
  CHECK(p.mem_fwd == T * (16 * h + 8 * h / t) * 4);
  CHECK(p.mem_bwd == T * (16 * h + 12 * h / t) * 4);
  CHECK(p.score_mem_fwd == T * 2 * (a / t) * T * 4);
  // lib/kernels/cuda: norms 4h, dropout + residual 2 x 3.5h, the row biases
  // after their all-reduce 4h; GELU's input written by the epilogue 4h/t;
  // the attention's head moves, Q, K, V in and the output out, 8h/t.
  // Backward: dropouts 5h, norms 2 x 6h, row-bias gradients 2h; 7h/t column
  // bias gradients + 4h/t GELU's input read by the epilogue; head moves,
  // Q, K, V and dO in, dQ, dK, dV out, 14h/t.
  CHECK(c.mem_fwd == T * (15 * h + 12 * h / t) * 4);
  CHECK(c.mem_bwd == T * (19 * h + 25 * h / t) * 4);
  // Megatron-LM 2021: norms 4h, bias-dropout-add 2 x 3.5h; qkv bias 6h/t,
  // bias-GeLU 8h/t, the context's permute 2h/t. Backward: 2 x (2.5h + the
  // bias's reduction h), norms 2 x 5h, autograd's residual sums 2 x 3h; GeLU
  // 12h/t + its bias 4h/t, permute 2h/t, qkv bias 3h/t. Scores: causal softmax
  // 1.5 / 2 a s/t, attention dropout 2.5 a s/t each way.
  CHECK(m.mem_fwd == T * (11 * h + 16 * h / t) * 4);
  CHECK(m.mem_bwd == T * (23 * h + 21 * h / t) * 4);
  CHECK(m.score_mem_fwd == T * 4 * (a / t) * T * 4);
  CHECK(m.score_mem_bwd == T * 4.5 * (a / t) * T * 4);
  // The loss: fp32 cross-entropy in place, 19 and 7 passes of V/t.
  CHECK(mega.layers[4].mem_fwd == T * 19 * V / t * 4);
  CHECK(per_op.layers[4].mem_fwd == T * 2 * V / t * 4);
  // The products are the same.
  CHECK(m.fwd_flops == p.fwd_flops);
  // Megatron-Core r0.8 with Transformer Engine: 2021's replicated passes
  // forward, bias-GeLU 8h/t (qkv's bias in the product, no permute);
  // backward TE's layer norm 3h and the residual sum 3h each, the biases' h
  // each, the dropouts 2.5h each; GeLU and its bias 16h/t. Sequence
  // parallelism gathers in place: no copies.
  const ModelProfile core = profile_model(cfg, 32, 2, false, Kernels::megatron_core);
  CHECK(core.layers[1].mem_fwd == T * (11 * h + 8 * h / t) * 4);
  CHECK(core.layers[1].mem_bwd == T * (19 * h + 16 * h / t) * 4);
  CHECK(core.layers[4].mem_fwd == T * 19 * V / t * 4);
  CHECK(profile_model(cfg, 32, 2, true, Kernels::megatron_core).layers[1].mem_fwd == T * (11 * h / t + 8 * h / t) * 4);
  // What Megatron keeps (Korthikanti et al. 2022), in 16-bit bytes times 2:
  // s h (10 + 24/t) + 5 a s^2/t with dropout; under sequence parallelism
  // 34 s h / t; full recomputation keeps the block's input, 2 s h (/t).
  CHECK(m.act_bytes == 2 * (T * h * (10 + 24 / t) + 5 * (a / t) * T * T));
  CHECK(m.score_bytes == 2 * 5 * (a / t) * T * T);
  CHECK(m.in_bytes == 2 * 2 * T * h);
  const LayerProfile core_sp = profile_model(cfg, 32, 2, true, Kernels::megatron_core).layers[1];
  CHECK(core_sp.act_bytes == 2 * (T * h * 34 / t + 5 * (a / t) * T * T));
  CHECK(core_sp.in_bytes == 2 * 2 * T * h / t);
  // This trainer's own count is its layers' (lib/model's Cost).
  CHECK(p.act_bytes != m.act_bytes);
  // Without dropout the masks and dropout passes go.
  cfg.dropout = 0;
  CHECK(profile_model(cfg, 32, 2, false, Kernels::megatron_2021).layers[1].mem_fwd == T * (10 * h + 16 * h / t) * 4);
  CHECK(profile_model(cfg, 32, 1, false, Kernels::dtrain_cuda).layers[1].mem_fwd == T * (10 * h + 12 * h) * 4);
  CHECK(profile_model(cfg, 32, 2, false, Kernels::megatron_2021).layers[1].act_bytes ==
        2 * (T * h * (8 + 24 / t) + 2 * (a / t) * T * T));
}

TEST_CASE("gradient accumulation: a pass over the chunk's parameters per micro-batch after the first") {
  const ModelConfig cfg = gpt(4, 64, 4, 256, 32);
  const ModelProfile m = profile_model(cfg, 32, 1);
  const std::vector<StageProfile> st = profile_stages(m, 2);
  Hardware hw = load_hardware("a100-80gb");
  Workload w;
  w.global_batch = 8;
  w.precision = "bf16";
  Candidate c;
  c.pp = 2;
  c.micro_batch = 1;
  c.micro_batches = 8;
  Features f;
  const Prediction none = predict(m, st, hw, w, f, c);
  f.grad_accumulation_bytes = 6;
  const Prediction six = predict(m, st, hw, w, f, c);
  const double busiest = std::max(st[0].params, st[1].params);
  // 7 of the 8 micro-batches add their gradients: 6 bytes per parameter each.
  CHECK(six.memory_bound_seconds - none.memory_bound_seconds ==
        doctest::Approx(7 * busiest * 6 / hw.memory_bandwidth).epsilon(0.05));
  CHECK(six.step_seconds > none.step_seconds);
  c.micro_batches = 1;
  w.global_batch = 1;
  CHECK(predict(m, st, hw, w, f, c).step_seconds == doctest::Approx(predict(m, st, hw, w, Features{}, c).step_seconds));
}

TEST_CASE("model profile: a 1T-parameter GPT describes without allocating, quickly") {
  // Narayanan et al. 2021's 1T model: 128 layers of width 25600. Declaring
  // its parameters allocates nothing; 4 TB would not fit here.
  const ModelConfig cfg = gpt(128, 25600, 160, 51200, 2048);
  const auto t0 = std::chrono::steady_clock::now();
  const ModelProfile m = profile_model(cfg, 2048, 8);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(m.total_params == doctest::Approx(1.008e12).epsilon(0.002));
  CHECK(seconds < 1.0);  // about a millisecond; generous for a loaded machine
}

namespace {

// Every stage's schedule for shared_pipeline_seconds.
std::vector<std::vector<PipeOp>> schedules(const char* schedule, int stages, int micro_batches, int chunks = 1) {
  std::vector<std::vector<PipeOp>> ops;
  for (int s = 0; s < stages; ++s) ops.push_back(pipeline_schedule(schedule, s, stages, micro_batches, chunks));
  return ops;
}

}  // namespace

TEST_CASE("shared compute units: the schedule simulated op by op with the busy stages sharing the units") {
  // Units enough for every stage: the schedules' own times, (m + p - 1)(f + b)
  // for equal stages (4 stages, 8 micro-batches, f = 1 s, b = 2 s: 11 x 3).
  for (const char* sched : {"1f1b", "gpipe"})
    CHECK(shared_pipeline_seconds(schedules(sched, 4, 8), {1, 1, 1, 1}, {2, 2, 2, 2}, 4) == doctest::Approx(33));
  // Interleaved, 2 chunks per stage: (m v + p - 1)(f + b), the bubble a v-th.
  CHECK(shared_pipeline_seconds(schedules("interleaved", 2, 4, 2), {1, 1, 1, 1}, {2, 2, 2, 2}, 2) ==
        doctest::Approx((4 * 2 + 1) * 3));
  // One stage: every op at the units' rate, 3 x (0.2 + 0.3) / 0.5.
  CHECK(shared_pipeline_seconds(schedules("1f1b", 1, 3), {0.2}, {0.3}, 0.5) == doctest::Approx(3.0));
  // Unequal stages, unshared: f = 2, 1 and b = 4, 2 over 2 micro-batches.
  // s0 F0 0-2; s0 F1 2-4 with s1 F0 2-3, s1 B0 3-5; s0 waits for it, B0 5-9
  // with s1 F1 5-6 and B1 6-8; s0 B1 9-13. The flow shop of fused
  // forward-and-backward slots, (m - 1) max + sum, said 6 + 9 = 15.
  const std::vector<double> fw{2, 1}, bw{4, 2};
  CHECK(shared_pipeline_seconds(schedules("1f1b", 2, 2), fw, bw, 2) == doctest::Approx(13));
  // The same on 1.5 units (two busy stages run at 0.75): s0 F0 0-2; s0 F1
  // and s1 F0 together, s1 F0 done at 2 + 4/3; s1 B0 beside s0 F1's last
  // second, which ends at 14/3; s1 B0 alone to 17/3; s0 B0 with s1 F1
  // (done at 7) and s1 B1 (done at 29/3), its last second alone to 32/3;
  // s0 B1 alone: 44/3.
  CHECK(shared_pipeline_seconds(schedules("1f1b", 2, 2), fw, bw, 1.5) == doctest::Approx(44.0 / 3));
  // Three equal stages (f = 1, b = 2), 3 micro-batches, 2 units: the
  // warm-up's forwards run 0-1, 1-2 and three at 2/3 to 3.5; then the
  // backward wave and the remaining forwards as stages free up: 16.5
  // (traced by hand), against 5 x 3 = 15 unshared and 27 / 2 = 13.5 of work.
  CHECK(shared_pipeline_seconds(schedules("1f1b", 3, 3), {1, 1, 1}, {2, 2, 2}, 2) == doctest::Approx(16.5));

  // In predict: 4 devices on 2 units. One stage of two layers, 4 micro-batches
  // of 2 (12 ms each at a whole unit's rate, forward and backward): dp = 4
  // runs every device at once, 4 x 12 ms x 2.
  const ModelProfile m = toy_profile(2);
  Hardware hw = toy_hardware(4);
  hw.compute_units = 2;
  Workload w;
  w.global_batch = 32;
  const Features f = Features::full();
  Candidate dp{.dp = 4, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 4};
  Prediction p = predict(m, profile_stages(m, 1), hw, w, f, dp);
  CHECK(p.pipeline_seconds == doctest::Approx(4 * 12e-3 * 2));
  // No pipeline, no bubble: the waiting for the shared units is said apart.
  CHECK(p.bubble_fraction == doctest::Approx(0));
  CHECK(p.sharing_seconds == doctest::Approx(4 * 12e-3));
  // pp = 2, dp = 2: stages of 6 ms + the 2 KB transfers (12 us) per
  // micro-batch; each pipeline owns one unit, so whatever the schedule it
  // does all 8 stage-micro-batches of work at that unit's rate.
  Candidate pp{.dp = 2, .tp = 1, .pp = 2, .micro_batch = 2, .micro_batches = 4};
  p = predict(m, profile_stages(m, 2), hw, w, f, pp);
  CHECK(p.pipeline_seconds == doctest::Approx(8 * (6e-3 + 12e-6)));
}

TEST_CASE("shared compute units: a long step simulated at two lengths and extended, as in full") {
  // Unequal stages (random times) on fewer units than stages: the extended
  // time against the op-by-op simulation of the whole step, past the
  // lengths simulated (10p micro-batches). 1F1B's steady state repeats
  // exactly; the interleaved one within 1e-3; GPipe is simulated whole.
  struct Case {
    const char* schedule;
    int stages, chunks;
    double units, tolerance;
  };
  CounterRng rng(11);
  for (const Case& k : {Case{"1f1b", 3, 1, 2, 1e-9}, Case{"1f1b", 4, 1, 1.5, 1e-9}, Case{"1f1b", 5, 1, 3, 1e-9},
                        Case{"gpipe", 3, 1, 2, 1e-12}, Case{"interleaved", 2, 2, 1, 1e-3},
                        Case{"interleaved", 4, 3, 2.5, 1e-3}, Case{"1f1b", 1, 1, 0.5, 1e-9}}) {
    CAPTURE(k.schedule);
    CAPTURE(k.stages);
    CAPTURE(k.units);
    const int n = k.stages * k.chunks;
    for (int trial = 0; trial < 5; ++trial) {
      std::vector<double> fw(static_cast<size_t>(n)), bw(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) fw[i] = 0.5 + rng.uniform(), bw[i] = 1.0 + 2.0 * rng.uniform();
      for (int m : {k.stages * 12 + (k.schedule[0] == 'i' ? 0 : 1), k.stages * 40}) {
        CAPTURE(m);
        const double full = shared_pipeline_seconds(schedules(k.schedule, k.stages, m, k.chunks), fw, bw, k.units);
        CHECK(shared_schedule_seconds(k.schedule, k.stages, m, k.chunks, fw, bw, k.units) ==
              doctest::Approx(full).epsilon(k.tolerance));
      }
    }
  }
}

TEST_CASE("handoff latency: added to every stage-boundary transfer") {
  const ModelProfile m = toy_profile(2);
  Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  const Features f = Features::full();
  Candidate two{.dp = 1, .tp = 1, .pp = 2, .micro_batch = 2, .micro_batches = 4};
  const Prediction before = predict(m, profile_stages(m, 2), hw, w, f, two);
  hw.handoff_latency = 1e-3;
  const Prediction after = predict(m, profile_stages(m, 2), hw, w, f, two);
  // Each stage's work grows by one transfer's 1 ms: (m - 1) x 1 ms + 2 x 1 ms.
  CHECK(after.pipeline_seconds - before.pipeline_seconds == doctest::Approx(5e-3));
  CHECK(after.pp_seconds - before.pp_seconds == doctest::Approx(4e-3));
  // One stage: nothing to hand over.
  Candidate one = two;
  one.pp = 1;
  CHECK(predict(m, profile_stages(m, 1), hw, w, f, one).step_seconds ==
        doctest::Approx(predict(m, profile_stages(m, 1), toy_hardware(), w, f, one).step_seconds));
}

TEST_CASE("sequence parallel: the norms' and residuals' passes split over tp, plus this trainer's two copies each way") {
  // Dropout 0: per_op moves 10h replicated forward, 12h backward (and 8h/t, 12h/t split) per token.
  const ModelConfig cfg = gpt(2, 256, 4, 256, 128);
  const double s = 128, h = 256, t = 4, bytes = 4;
  for (Kernels k : {Kernels::per_op, Kernels::dtrain_cuda, Kernels::megatron_2021}) {
    CAPTURE(kernels_name(k));
    const ModelProfile plain = profile_model(cfg, 128, 4, false, k), sp = profile_model(cfg, 128, 4, true, k);
    const LayerProfile &a = plain.layers[1], &b = sp.layers[1];
    REQUIRE(a.block);
    // The replicated part shrinks by t; the transposes of (B, T, C) add 4h each way, but not in
    // Megatron-LM's (T, B, C).
    const double copies = k == Kernels::megatron_2021 ? 0 : 4 * s * h * bytes;
    const double rep_fwd = (a.mem_fwd - b.mem_fwd + copies) / (s * h * bytes * (1 - 1 / t));
    const double rep_bwd = (a.mem_bwd - b.mem_bwd + copies) / (s * h * bytes * (1 - 1 / t));
    if (k == Kernels::per_op) {
      CHECK(rep_fwd == doctest::Approx(10));
      CHECK(rep_bwd == doctest::Approx(12));
    }
    CHECK(rep_fwd > 0);
    CHECK(rep_bwd > 0);
  }
}

TEST_CASE("tp bandwidth: the tp all-reduces at Hardware::tp_bandwidth where set, else at the link's") {
  const ModelConfig cfg = gpt(4, 256, 4, 256, 128);
  const ModelProfile m = profile_model(cfg, 128, 2);
  Hardware hw = load_hardware("cpu-local");
  hw.intra = {4e9, 0};  // no latency: the bytes alone
  Workload w;
  w.global_batch = 16;
  const Features f = Features::this_trainer();
  const Candidate c{.dp = 2, .tp = 2, .pp = 1, .micro_batch = 8, .micro_batches = 1};
  const Prediction at_link = predict(m, profile_stages(m, 1), hw, w, f, c);
  REQUIRE(at_link.tp_seconds > 0);
  hw.tp_bandwidth = 1e9;  // a quarter of the link's
  const Prediction measured = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(measured.tp_seconds == doctest::Approx(4 * at_link.tp_seconds));
  CHECK(measured.step_seconds > at_link.step_seconds);
  CHECK(measured.compute_seconds == doctest::Approx(at_link.compute_seconds));
  // Sequence parallel: at sp_bandwidth where set, else at tp_bandwidth.
  const ModelProfile msp = profile_model(cfg, 128, 2, true);
  Candidate sp = c;
  sp.sequence_parallel = true;
  const Prediction sp_tp = predict(msp, profile_stages(msp, 1), hw, w, f, sp);
  REQUIRE(sp_tp.tp_seconds > 0);
  Hardware sp_hw = hw;
  sp_hw.sp_bandwidth = 0.5e9;  // half of tp_bandwidth
  CHECK(predict(msp, profile_stages(msp, 1), sp_hw, w, f, sp).tp_seconds == doctest::Approx(2 * sp_tp.tp_seconds));
  CHECK(predict(m, profile_stages(m, 1), sp_hw, w, f, c).tp_seconds == doctest::Approx(measured.tp_seconds));
  // Without tp nothing changes.
  const Candidate dp{.dp = 4, .tp = 1, .pp = 1, .micro_batch = 4, .micro_batches = 1};
  const ModelProfile m1 = profile_model(cfg, 128, 1);
  Hardware link_only = hw;
  link_only.tp_bandwidth = 0;
  CHECK(predict(m1, profile_stages(m1, 1), hw, w, f, dp).step_seconds ==
        doctest::Approx(predict(m1, profile_stages(m1, 1), link_only, w, f, dp).step_seconds));
}

TEST_CASE("matrix products at their shape's efficiency, memory-bound passes at the memory bandwidth") {
  ModelProfile m = toy_profile(1);
  LayerProfile& l = m.layers[0];
  // 1 GFLOP forward in a per-head product of smallest dimension 128, and
  // 1 MB read + written forward, 2 MB backward.
  l.gemms = {Gemm{1e9, 2e9, 0, 128}};
  l.mem_fwd = 1e6;
  l.mem_bwd = 2e6;
  Hardware hw = toy_hardware();
  hw.gemm_half_dim = 128;  // half the large-product efficiency at 128: 0.25 x 2 TFLOP/s
  Workload w;
  w.global_batch = 1;
  Candidate c{.dp = 1, .tp = 1, .pp = 1, .micro_batch = 1, .micro_batches = 1};
  Prediction p = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  CHECK(p.compute_seconds == doctest::Approx(3e9 / 0.5e12));
  CHECK(p.memory_bound_seconds == doctest::Approx(3e6 / 1e9));
  CHECK(p.pipeline_seconds == doctest::Approx(3e9 / 0.5e12 + 3e6 / 1e9));
  // A product that grows with the micro-batch: rows 64 per sample, dim 1e6.
  l.gemms = {Gemm{1e9, 2e9, 64, 1e6}};
  c.micro_batch = 2;
  w.global_batch = 2;
  p = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  CHECK(p.compute_seconds == doctest::Approx(2 * 3e9 / (2e12 * 0.5 * 128 / 256)));
}

TEST_CASE("attention: a materialising backend keeps the scores and moves them, a fused one neither") {
  ModelProfile m = toy_profile(1);
  LayerProfile& l = m.layers[0];
  l.score_bytes = 4e5;  // of the 1 MB of activations
  l.score_mem_fwd = 1e6;
  l.score_mem_bwd = 1e6;
  l.selective_flops = 1e8;
  l.selective_dim = 0;
  Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 1;
  Candidate c{.dp = 1, .tp = 1, .pp = 1, .micro_batch = 1, .micro_batches = 1};
  const Prediction kept = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  hw.fused_attention = true;
  const Prediction fused = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  CHECK(kept.memory.activations - fused.memory.activations == doctest::Approx(4e5));
  CHECK(kept.memory_bound_seconds - fused.memory_bound_seconds == doctest::Approx(2e6 / 1e9));
  // The fused backward computes Q K^T again, skipping the causal mask's
  // upper tiles: half the product.
  CHECK(fused.compute_seconds - kept.compute_seconds == doctest::Approx(0.5 * 1e8 / 1e12));
}

TEST_CASE("attention: a fused kernel does half the causal per-head products, a materialising one all") {
  ModelConfig cfg = gpt(2, 64, 4, 256, 32);
  ModelProfile m = profile_model(cfg, 32, 1);
  Hardware hw = toy_hardware();
  hw.gemm_half_dim = 0;  // every shape at one rate: the FLOPs alone decide
  Workload w;
  w.global_batch = 1;
  Candidate c{.dp = 1, .tp = 1, .pp = 1, .micro_batch = 1, .micro_batches = 1};
  const Prediction kept = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  hw.fused_attention = true;
  const Prediction fused = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  // Per block, Q K^T and P V: 2 x 2 a s^2 d FLOPs forward, twice that
  // backward; the fused kernel does half and remakes half of Q K^T.
  const double s = 32, a = 4, d = 16, blocks = 2;
  const double attention = blocks * 3 * 2 * 2 * a * s * s * d;
  const double remake = blocks * 2 * a * s * s * d;
  const double rate = hw.peak_fp32 * hw.efficiency;
  CHECK(kept.compute_seconds - fused.compute_seconds == doctest::Approx((attention / 2 - remake / 2) / rate));
}

TEST_CASE("interleaved 1F1B: bubble divided by v, in-flight counts from the trainer's schedule") {
  const ModelProfile m = toy_profile(8);
  const Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  Candidate c{.dp = 1, .tp = 1, .pp = 2, .micro_batch = 1, .micro_batches = 8};
  const Prediction plain = predict(m, profile_stages(m, 2), hw, w, Features::full(), c);
  c.schedule = "interleaved";
  c.virtual_stages = 2;
  const Prediction il = predict(m, profile_stages(m, 4), hw, w, Features::full(), c);
  CHECK(plain.ideal_bubble == doctest::Approx(1.0 / 8));
  CHECK(il.ideal_bubble == doctest::Approx(1.0 / 16));
  CHECK(il.bubble_fraction < plain.bubble_fraction);
  CHECK(il.pp_bytes > plain.pp_bytes);  // a micro-batch crosses 3 boundaries instead of 1
  // The counts stop growing at 2 x stages micro-batches: the capped simulation
  // equals the whole schedule.
  for (int p : {2, 3, 4})
    for (int v : {2, 3})
      for (int mb = p; mb <= 6 * p; mb += p)
        for (int s = 0; s < p; ++s) {
          const std::vector<PipeOp> ops = pipeline_schedule("interleaved", s, p, mb, v);
          const std::vector<int64_t> got = interleaved_in_flight(s, p, mb, v);
          for (int ch = 0; ch < v; ++ch) CHECK(got[static_cast<size_t>(ch)] == in_flight(ops, ch));
        }
}

TEST_CASE("interleaved 1F1B under a caching allocator: the live copies at their most at once, one work set") {
  // Megatron-LM's stage s keeps (p - s - 1) 2 + (v - 1) p forwards in flight
  // after its warm-up, and one more while the next forward runs before its
  // backward (schedules.py, forward_backward_pipelining_with_interleaving).
  for (int p : {2, 3, 4, 12})
    for (int v : {2, 3, 4})
      for (int mb : {2 * p, 3 * p, 4 * p, 16 * p})
        for (int s = 0; s < p; ++s) {
          CAPTURE(p);
          CAPTURE(v);
          CAPTURE(mb);
          CAPTURE(s);
          const std::vector<double> one(static_cast<size_t>(v), 1.0);
          const double peak = interleaved_peak_bytes(s, p, mb, one);
          CHECK(peak == std::min((p - s - 1) * 2 + (v - 1) * p + 1, mb * v));
          // Each chunk's most, at its own moment, summed: never fewer.
          double sum = 0;
          for (int64_t x : interleaved_in_flight(s, p, mb, v)) sum += static_cast<double>(x);
          CHECK(peak <= sum);
          // Weighted copies: the capped simulation equals the whole schedule.
          std::vector<double> w(static_cast<size_t>(v));
          for (int ch = 0; ch < v; ++ch) w[static_cast<size_t>(ch)] = 1.0 + 0.37 * ch * ch;
          double now = 0, most = 0;
          for (const PipeOp& op : pipeline_schedule("interleaved", s, p, mb, v)) {
            now += (op.kind == PipeOp::Kind::forward ? 1 : -1) * w[static_cast<size_t>(op.chunk)];
            most = std::max(most, now);
          }
          CHECK(interleaved_peak_bytes(s, p, mb, w) == doctest::Approx(most));
        }
  CHECK(interleaved_peak_bytes(0, 12, 192, std::vector<double>(4, 1.0)) == 59);  // against 24 + 24 + 12 + 12

  // In the cost model: 8 layers in 2 stages x 2 chunks of 2, 8 micro-batches.
  // Stage 0's chunks keep 1 MB per layer each; a caching allocator holds the
  // peak of their sum plus one layer's work (none here); lib/train each
  // chunk's most, summed, and one set of the blocks' work.
  const ModelProfile m = toy_profile(8);
  const Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  Candidate c{.dp = 1, .tp = 1, .pp = 2, .micro_batch = 1, .micro_batches = 8};
  c.schedule = "interleaved";
  c.virtual_stages = 2;
  Features per_copy = Features::full(), caching = per_copy;
  caching.caching_allocator = true;
  const std::vector<StageProfile> chunks = profile_stages(m, 4);
  const std::vector<int64_t> counts = interleaved_in_flight(0, 2, 8, 2);
  const double lib_train = predict(m, chunks, hw, w, per_copy, c).memory.activations;
  // Both chunks send their output (1 KB per sample, each copy its own); the
  // second starts with a block: each copy keeps its own input gradient too.
  // Each receives its output's gradient into one buffer of the step loop's.
  CHECK(lib_train == doctest::Approx((counts[0] + counts[1]) * (2e6 + 1e3) + counts[1] * 1e3 + 2 * 1e3));
  const double peak = interleaved_peak_bytes(0, 2, 8, {2e6, 2e6});
  CHECK(peak == 5 * 2e6);  // (2 - 0 - 1) 2 + (2 - 1) 2 + 1
  CHECK(predict(m, chunks, hw, w, caching, c).memory.activations == doctest::Approx(peak));
  // Megatron-LM before 2022 also keeps each sent output (1 KB per sample
  // here) until its backward: every chunk but the model's last sends one.
  caching.keeps_sent_outputs = true;
  CHECK(predict(m, chunks, hw, w, caching, c).memory.activations ==
        doctest::Approx(interleaved_peak_bytes(0, 2, 8, {2e6 + 1e3, 2e6 + 1e3})));
  c.schedule = "1f1b";
  c.virtual_stages = 1;
  CHECK(predict(m, profile_stages(m, 2), hw, w, caching, c).memory.activations == doctest::Approx(2 * (4e6 + 1e3)));
}

// ZeRO-3's cases: four layers of 1e6 parameters, dp 4, one micro-batch of 2.
struct Zero3Case {
  ModelProfile m = toy_profile(4);
  Hardware hw = toy_hardware();
  Workload w;
  Candidate c{.dp = 4, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 1, .zero = 3};
  Zero3Case() {
    for (LayerProfile& l : m.layers) l.params = 1e6;
    w.global_batch = 8;
  }
};

TEST_CASE("full recomputation with the checkpoints in host memory: off the device, copied out and back") {
  // Two blocks, each keeping its 1 KB input per sample under full
  // recomputation; one stage, 4 micro-batches of 2, 1F1B holds one at a time.
  const ModelProfile m = toy_profile(2);
  Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  Features f = Features::full();
  Candidate c{.dp = 1, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 4};
  c.recompute = Recompute::full;
  const Prediction device = predict(m, profile_stages(m, 1), hw, w, f, c);
  f.host_checkpoints = true;
  // No host bandwidth given: said, naming the hardware and the key.
  CHECK_THROWS_WITH_AS(predict(m, profile_stages(m, 1), hw, w, f, c),
                       doctest::Contains("hardware 'toy' gives no host bandwidth ([node] host_bandwidth_gbs)"),
                       ConfigError);
  hw.host_bandwidth = 1e6;  // 1 MB/s: each copy of 2 x 2 KB takes 4 ms
  const Prediction host = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(host.memory.activations == doctest::Approx(device.memory.activations - 2 * 2e3));
  CHECK(host.host_seconds == doctest::Approx(4 * 2 * 4e-3));
  CHECK(host.pipeline_seconds == doctest::Approx(device.pipeline_seconds + host.host_seconds));
  CHECK(device.host_seconds == 0);
  // Without full recomputation there are no checkpoints to move.
  c.recompute = Recompute::none;
  hw.host_bandwidth = 0;
  const Prediction none = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(none.host_seconds == 0);
}

TEST_CASE("ZeRO-3: parameters sharded with a two-layer window, 1.5x plain dp's traffic") {
  Zero3Case z;
  auto& [m, hw, w, c] = z;
  c.zero = 0;
  const Prediction plain = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  c.zero = 3;
  const Prediction z3 = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  CHECK(z3.memory.params == doctest::Approx((1e6 + 2 * 1e6) * 4));
  CHECK(z3.memory.grads == doctest::Approx((1e6 + 2 * 1e6) * 4));
  CHECK(z3.memory.optimizer == doctest::Approx(1e6 * 8));
  CHECK(z3.dp_bytes == doctest::Approx(1.5 * plain.dp_bytes));  // two gathers and a scatter vs 2 x all-reduce
  CHECK(z3.zero3_seconds > 0);
  // Gathering per module (DeepSpeed) rather than per top-level layer: smaller windows.
  Features per_module = Features::full();
  per_module.zero_unit_params = 2.5e5;
  const Prediction z3m = predict(m, profile_stages(m, 1), hw, w, per_module, c);
  CHECK(z3m.memory.params == doctest::Approx((1e6 + 2 * 2.5e5) * 4));
  CHECK(z3m.memory.grads == doctest::Approx((1e6 + 2 * 2.5e5) * 4));
}

TEST_CASE("ZeRO-3: a ring latency per gathering unit, a runtime that hides none, and one that keeps the remade blocks") {
  Zero3Case z;
  auto& [m, hw, w, c] = z;
  // Nothing hidden: the forward's gather, the backward's gather and scatter,
  // each 16 MB over 4 ranks plus one ring's latency (3 x 10 us) for each of
  // the 4 layers beyond the first call's.
  Features f = Features::full();
  f.zero3_overlap = 0;
  const double one = all_gather_seconds(16e6, 4, hw.intra) + 3 * 3 * 10e-6;
  const Prediction none = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(none.zero3_seconds == doctest::Approx(3 * one));
  // Units of at most 2.5e5 parameters: 4 per layer, 16 calls per gather.
  f.zero_unit_params = 2.5e5;
  const Prediction per_module = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(per_module.zero3_seconds == doctest::Approx(3 * (one + 12 * 3 * 10e-6)));
  // Full recomputation gathers the remade blocks once more, unless the
  // runtime keeps them for the backward that follows.
  c.recompute = Recompute::full;
  f.zero_unit_params = 0;
  const Prediction again = predict(m, profile_stages(m, 1), hw, w, f, c);
  f.zero3_regather_remade = false;
  const Prediction kept = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(again.dp_bytes - kept.dp_bytes == doctest::Approx(0.75 * 4e6 * 4));
  CHECK(again.zero3_seconds - kept.zero3_seconds == doctest::Approx(one));
}

TEST_CASE("ZeRO-3: a runtime slower than the link, and reductions hidden where its gathers are not") {
  Zero3Case z;
  auto& [m, hw, w, c] = z;
  Features f = Features::full();
  f.zero3_overlap = 0;
  // A rate below the link's: every gather and scatter at that rate, the
  // latencies unchanged; a rate above it changes nothing.
  const double latencies = 3 * (3 * 10e-6 + 3 * 3 * 10e-6);
  const Prediction link = predict(m, profile_stages(m, 1), hw, w, f, c);
  f.zero3_rate = hw.intra.bandwidth / 4;
  const Prediction slow = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(slow.zero3_seconds - latencies == doctest::Approx(4 * (link.zero3_seconds - latencies)));
  CHECK(slow.dp_bytes == doctest::Approx(link.dp_bytes));
  f.zero3_rate = hw.intra.bandwidth * 4;
  CHECK(predict(m, profile_stages(m, 1), hw, w, f, c).zero3_seconds == doctest::Approx(link.zero3_seconds));
  // The scatter behind the backward (its own overlap) while both gathers
  // wait: one collective's time less what the backward hides of it, which
  // still costs its share of the compute.
  f.zero3_rate = 0;
  f.zero3_reduce_overlap = 1;
  const double one = link.zero3_seconds / 3;
  const Prediction hidden = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(hidden.zero3_seconds < link.zero3_seconds);
  CHECK(hidden.zero3_seconds >= doctest::Approx(2 * one));
  // With one overlap for both, what it was before the two were told apart.
  Features same = Features::full();
  same.zero3_overlap = 0.5;
  const Prediction one_overlap = predict(m, profile_stages(m, 1), hw, w, same, c);
  same.zero3_reduce_overlap = 0.5;
  CHECK(predict(m, profile_stages(m, 1), hw, w, same, c).zero3_seconds == doctest::Approx(one_overlap.zero3_seconds));
}

TEST_CASE("ZeRO-3: the tied embedding is sharded and gathered like any unit, its gradient kept whole for the step") {
  // Four layers of 1e6 parameters; the first is the embedding, 3e6 of them
  // the tied wte, which the last (the head, no parameters of its own) reads.
  Zero3Case z;
  auto& [m, hw, w, c] = z;
  m.layers[0].params = 3e6 + 1e5;  // wte + wpe
  m.layers[3].params = 0;
  m.tied_params = 3e6;
  const Prediction z3 = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  const double P = 3e6 + 1e5 + 2e6;
  // Parameters: the 1/4 shard of all of them, wte included, + the wide
  // window (the embedding's unit) + the narrow one (a block's).
  CHECK(z3.memory.params == doctest::Approx((P / 4 + 3.1e6 + 1e6) * 4));
  // Gradients: two windows of the largest layer less wte, + wte's whole gradient.
  CHECK(z3.memory.grads == doctest::Approx((P / 4 + 2 * 1e6 + 3e6) * 4));
  // Bytes: per micro-batch two gathers of everything + the head's gather of
  // wte; the scatter of every layer's gradients but wte's, whose is once a step.
  const double f = 3.0 / 4.0;
  CHECK(z3.dp_bytes == doctest::Approx(f * (2 * P + 3e6) * 4 + f * P * 4));
}

TEST_CASE("uniform blocks (Megatron-LM's cut): as many blocks per chunk, embedding first, head last") {
  // An embedding, 6 blocks, a head three times a block's cost: by FLOPs the
  // head gets a stage of its own; cut uniformly it rides with the last blocks.
  ModelProfile m = toy_profile(8);
  m.layers.front().block = m.layers.back().block = false;
  m.layers.front().fwd_flops = 1e8;
  m.layers.back().fwd_flops = 3e9;
  m.layers.back().bwd_flops = 6e9;
  CHECK(block_count(m) == 6);
  const std::vector<StageProfile> by_flops = profile_stages(m, 3);
  CHECK(by_flops.back().first_layer == 7);  // the head alone
  const std::vector<StageProfile> uniform = profile_stages(m, 3, true);
  CHECK(uniform[0].first_layer == 0);
  CHECK(uniform[0].last_layer == 3);  // embedding + blocks 1, 2
  CHECK(uniform[1].first_layer == 3);
  CHECK(uniform[1].last_layer == 5);
  CHECK(uniform[2].first_layer == 5);
  CHECK(uniform[2].last_layer == 8);  // blocks 5, 6 + head
  CHECK_THROWS_AS(profile_stages(m, 4, true), ConfigError);  // 6 blocks in 4 chunks
  // The embedding and the head as one block each (BigScience's
  // 'type:transformer|embedding'): 8 units over 4 stages, 2 each.
  CHECK(uniform_units(m, false) == 6);
  CHECK(uniform_units(m, true) == 8);
  const std::vector<StageProfile> units = profile_stages(m, 4, true, true);
  REQUIRE(units.size() == 4);
  CHECK(units[0].first_layer == 0);
  CHECK(units[0].last_layer == 2);  // embedding + block 1
  CHECK(units[1].last_layer == 4);  // blocks 2, 3
  CHECK(units[2].last_layer == 6);  // blocks 4, 5
  CHECK(units[3].first_layer == 6);
  CHECK(units[3].last_layer == 8);  // block 6 + head
  CHECK(units[0].blocks.count == 1);
  CHECK(units[3].blocks.count == 1);
  CHECK_THROWS_AS(profile_stages(m, 3, true, true), ConfigError);  // 8 units in 3 chunks
  // Nothing before the first block: only the head is a unit of its own.
  ModelProfile headless = toy_profile(7);
  headless.layers.back().block = false;
  CHECK(uniform_units(headless, true) == 7);
  const std::vector<StageProfile> seven = profile_stages(headless, 7, true, true);
  REQUIRE(seven.size() == 7);
  for (int k = 0; k < 7; ++k) {
    CAPTURE(k);
    CHECK(seven[k].first_layer == k);
    CHECK(seven[k].last_layer == k + 1);
  }
  // A model without blocks (the CNN) is cut by FLOPs either way.
  for (LayerProfile& l : m.layers) l.block = false;
  CHECK(profile_stages(m, 4, true).back().first_layer == profile_stages(m, 4).back().first_layer);
}

TEST_CASE("scatter/gather of stage boundaries: 1/t per tp rank over the link, then a tp all-gather") {
  ModelProfile m = toy_profile(4);
  m.tp = 4;
  for (LayerProfile& l : m.layers) l.out_bytes = 4e6;
  Hardware hw = toy_hardware();
  hw.inter = {1e8, 20e-6};  // stages talk between nodes
  Workload w;
  w.global_batch = 2;
  Candidate c{.dp = 4, .tp = 4, .pp = 2, .micro_batch = 1, .micro_batches = 2};  // 32 devices: pp spans nodes
  Features f = Features::full();
  const Prediction whole = predict(m, profile_stages(m, 2), hw, w, f, c);
  f.p2p_scatter_gather = true;
  const Prediction split = predict(m, profile_stages(m, 2), hw, w, f, c);
  // Per micro-batch each stage receives one boundary (inputs or gradients).
  const double whole_xfer = 20e-6 + 4e6 / 1e8;
  const double split_xfer = 20e-6 + 1e6 / 1e8 + (3 * 10e-6 + 0.75 * 4e6 / 1e9);
  CHECK(whole.pp_seconds == doctest::Approx(2 * whole_xfer));
  CHECK(split.pp_seconds == doctest::Approx(2 * split_xfer));
  CHECK(split.pp_bytes == doctest::Approx(whole.pp_bytes / 4));
  // Without tp there is nothing to split.
  c.tp = 1, c.dp = 16;
  m.tp = 1;
  CHECK(predict(m, profile_stages(m, 2), hw, w, f, c).pp_seconds ==
        doctest::Approx(predict(m, profile_stages(m, 2), hw, w, Features::full(), c).pp_seconds));
}

TEST_CASE("the update's fp32 gradient copy: a peak beside the freed activations, mixed precision only") {
  ModelProfile m = toy_profile(2);
  for (LayerProfile& l : m.layers) l.params = 1e6;
  Hardware hw = toy_hardware();
  hw.peak_bf16 = 4e12;
  Workload w;
  w.global_batch = 1;
  w.precision = "bf16";
  Features f = Features::full();
  Candidate c{.dp = 1, .tp = 1, .pp = 1, .micro_batch = 1, .micro_batches = 1};
  const Prediction plain = predict(m, profile_stages(m, 1), hw, w, f, c);
  f.update_grad_copy_bytes = 4;
  const Prediction copy = predict(m, profile_stages(m, 1), hw, w, f, c);
  // 2e6 parameters x 4 bytes = 8 MB, more than the 1 MB of activations (bf16 halves 2 x 1e6).
  CHECK(copy.memory.update_copy == doctest::Approx(8e6));
  CHECK(copy.memory.total() - plain.memory.total() == doctest::Approx(8e6 - plain.memory.activations));
  CHECK(copy.step_seconds == doctest::Approx(plain.step_seconds));
  // ZeRO-1 copies the owned shard only.
  c.dp = 4, c.zero = 1;
  w.global_batch = 4;
  CHECK(predict(m, profile_stages(m, 1), hw, w, f, c).memory.update_copy == doctest::Approx(2e6));
  // fp32 training updates its fp32 gradients in place.
  w.precision = "fp32";
  CHECK(predict(m, profile_stages(m, 1), hw, w, f, c).memory.update_copy == 0);
}

TEST_CASE("an overlapping data-parallel wrapper only without a pipeline, with buckets of its own") {
  // Megatron-LM 2021: PyTorch's DDP (overlapped, a second copy of the
  // gradients in its buckets) for pp = 1, its local DDP (after the backward,
  // no copy) for pp > 1. Two layers of 1e6 parameters, fp32, dp 4.
  ModelProfile m = toy_profile(2);
  for (LayerProfile& l : m.layers) l.params = 1e6;
  const Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  w.bucket_bytes = 1e6;  // 8 buckets: all but the last hidden behind the backward
  Candidate c{.dp = 4, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 1};
  auto run = [&](int pp, bool overlap, bool megatron) {
    c.pp = pp;
    w.overlap = overlap;
    Features g = Features::full();
    g.overlap_without_pipeline_only = megatron;
    g.ddp_bucket_copy_bytes = megatron ? 2 : 0;
    return predict(m, profile_stages(m, pp), hw, w, g, c);
  };
  // Without a pipeline: overlapped as before; 2 more bytes per parameter held,
  // and copied in and out (4 x 2 bytes per parameter at 1 GB/s).
  const Prediction ddp = run(1, true, true), plain = run(1, true, false);
  CHECK(ddp.dp_exposed_seconds == doctest::Approx(plain.dp_exposed_seconds));
  CHECK(ddp.dp_exposed_seconds < run(1, false, false).dp_exposed_seconds);
  CHECK(ddp.memory.grads - plain.memory.grads == doctest::Approx(2e6 * 2));
  CHECK(ddp.optimizer_seconds - plain.optimizer_seconds == doctest::Approx(4 * 2e6 * 2 / 1e9));
  // With one: after the backward, as if overlap were off, and no bucket copy.
  const Prediction local = run(2, true, true), after = run(2, false, false);
  CHECK(local.dp_exposed_seconds == doctest::Approx(after.dp_exposed_seconds));
  CHECK(local.dp_exposed_seconds > run(2, true, false).dp_exposed_seconds);
  CHECK(local.memory.grads == doctest::Approx(after.memory.grads));
  CHECK(local.step_seconds == doctest::Approx(after.step_seconds));
}

TEST_CASE("local sync: no gradient all-reduce, every H steps one of the fp32 parameter changes, and 3-4 fp32 copies") {
  // Four layers of 1e6 parameters on dp 4 (toy links: 1 GB/s, 10 us).
  ModelProfile m = toy_profile(4);
  for (LayerProfile& l : m.layers) l.params = 1e6;
  const Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  const Candidate c{.dp = 4, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 1};
  const Prediction dp = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  CHECK(dp.dp_bytes == doctest::Approx(2.0 * 3 / 4 * 4e6 * 4));  // the gradients' ring all-reduce, fp32
  CHECK(dp.memory.local_sync == 0);

  w.local_sync_every = 8;
  const Prediction h8 = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  // Per step, 1/8 of one all-reduce of the fp32 parameters (the same bytes
  // as the fp32 gradients here), after the step: nothing hidden.
  CHECK(h8.dp_bytes == doctest::Approx(dp.dp_bytes / 8));
  CHECK(h8.dp_exposed_seconds == doctest::Approx(0));
  CHECK(dp.dp_exposed_seconds > 0);
  CHECK(h8.pipeline_seconds == doctest::Approx(dp.pipeline_seconds));
  // The outer step's share: its all-reduce and 16 fp32 passes at 1 GB/s, / 8.
  const double ring = 2.0 * 3 / 4 * 16e6 / 1e9;  // 16 MB over 1 GB/s links
  CHECK(h8.optimizer_seconds - (dp.optimizer_seconds) ==
        doctest::Approx((ring + 16 * 4e6 * 4 / 1e9) / 8).epsilon(0.01));
  // Memory: anchor, change and saved parameters; the outer momentum with Nesterov.
  CHECK(h8.memory.local_sync == doctest::Approx(3 * 4e6 * 4));
  w.outer_momentum = true;
  const Prediction nesterov = predict(m, profile_stages(m, 1), hw, w, Features::full(), c);
  CHECK(nesterov.memory.local_sync == doctest::Approx(4 * 4e6 * 4));
  CHECK(nesterov.memory.total() == doctest::Approx(h8.memory.total() + 4e6 * 4));
  // One replica: nothing to send, but the trainer keeps its copies all the
  // same (the outer step of one replica: with outer momentum another optimizer).
  const Prediction one = predict(m, profile_stages(m, 1), hw, w, Features::full(),
                                 Candidate{.dp = 1, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 4});
  CHECK(one.memory.local_sync == doctest::Approx(4 * 4e6 * 4));
  CHECK(one.dp_bytes == 0);
}

TEST_CASE("fp32 gradients and the parameter all-gather behind the next forward (Megatron-Core's optimizer)") {
  ModelProfile m = toy_profile(2);
  for (LayerProfile& l : m.layers) l.params = 1e8;  // 200 M parameters: the gathers matter
  m.total_params = 2e8;
  Hardware hw = toy_hardware();
  hw.peak_bf16 = hw.peak_fp32;
  Workload w;
  w.global_batch = 4;
  w.precision = "bf16";
  w.bucket_bytes = 1e8;
  Candidate c{.dp = 4, .tp = 1, .pp = 1, .micro_batch = 1, .micro_batches = 1, .zero = 1};
  Features f = Features::full();
  const Prediction plain = predict(m, profile_stages(m, 1), hw, w, f, c);
  // bf16 gradients: 2 bytes per parameter kept, the reduce-scatter of 400 MB.
  CHECK(plain.memory.grads == doctest::Approx(2e8 * 2));
  f.grad_bytes = 4;
  const Prediction fp32 = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(fp32.memory.grads == doctest::Approx(2e8 * 4));
  CHECK(fp32.dp_bytes - plain.dp_bytes == doctest::Approx(0.75 * 2e8 * 2));  // (d-1)/d of the extra 2 bytes
  // Kept in fp32 and bf16 both (DeepSpeed's BF16_Optimizer), sent as bf16:
  // 6 bytes a parameter held, the traffic and its time bf16's.
  Features ds = f;
  ds.grad_bytes = 6;
  ds.grad_reduce_bytes = 2;
  const Prediction both = predict(m, profile_stages(m, 1), hw, w, ds, c);
  CHECK(both.memory.grads == doctest::Approx(2e8 * 6));
  CHECK(both.dp_bytes == doctest::Approx(plain.dp_bytes));
  CHECK(both.dp_exposed_seconds == doctest::Approx(plain.dp_exposed_seconds));
  // The all-gather of the 400 MB of bf16 parameters: 3/4 x 0.4 s + 3 latencies,
  // after the update; behind the next forward (2 x 1 GFLOP at 1 TFLOP/s = 2 ms
  // per sample, hidden at overlap 1) it leaves the rest, but never less than
  // the first 100 MB bucket.
  const double gather = all_gather_seconds(2e8 * 2, 4, hw.intra);
  f.overlap_param_gather = true;
  const Prediction behind = predict(m, profile_stages(m, 1), hw, w, f, c);
  const double forward = 2 * 1e9 / (hw.peak_bf16 * hw.efficiency);
  CHECK(fp32.optimizer_seconds - behind.optimizer_seconds == doctest::Approx(forward).epsilon(1e-6));
  CHECK(behind.optimizer_seconds < fp32.optimizer_seconds);
  CHECK(fp32.optimizer_seconds - behind.optimizer_seconds < gather);
  for (LayerProfile& l : m.layers) l.fwd_flops = 1e13;  // a forward longer than the gather
  const Prediction slow = predict(m, profile_stages(m, 1), hw, w, f, c);
  f.overlap_param_gather = false;
  const Prediction slow_after = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(slow_after.optimizer_seconds - slow.optimizer_seconds ==
        doctest::Approx(gather - all_gather_seconds(1e8, 4, hw.intra)).epsilon(1e-6));
}

TEST_CASE("scatter/gather stage boundaries: under sequence parallelism each tp rank sends its part, none gathered") {
  const ModelConfig cfg = gpt(4, 64, 4, 256, 32);
  const ModelProfile m = profile_model(cfg, 32, 2, true);
  const std::vector<StageProfile> st = profile_stages(m, 2);
  Hardware hw = toy_hardware(2);  // tp inside a node, the stages across nodes
  hw.inter = {1e8, 20e-6};
  Workload w;
  w.global_batch = 1;
  Candidate c{.dp = 1, .tp = 2, .pp = 2, .micro_batch = 1, .micro_batches = 1, .sequence_parallel = true};
  Features f = Features::full();
  f.p2p_scatter_gather = true;
  const Prediction split = predict(m, st, hw, w, f, c);
  // Under sequence parallelism a rank's output is its T/t rows: 32/2 x 64
  // fp32. Each stage receives once per micro-batch (its input, or its
  // output's gradient), that part over the inter-node link, nothing gathered.
  const double part = 32 / 2 * 64 * 4;
  CHECK(st[0].out_bytes == part);
  CHECK(split.pp_seconds == doctest::Approx(p2p_seconds(part, hw.inter)));
  f.p2p_scatter_gather = false;
  CHECK(predict(m, st, hw, w, f, c).pp_seconds == doctest::Approx(split.pp_seconds));
  // Without it the whole activation is each rank's: scattered in halves and
  // gathered over the tp link.
  const ModelProfile m1 = profile_model(cfg, 32, 2, false);
  c.sequence_parallel = false;
  f.p2p_scatter_gather = true;
  const Prediction gathered = predict(m1, profile_stages(m1, 2), hw, w, f, c);
  CHECK(gathered.pp_seconds == doctest::Approx(p2p_seconds(2 * part / 2, hw.inter) +
                                               all_gather_seconds(2 * part, 2, hw.intra)));
}

TEST_CASE("interleaved: each chunk's gradient reduction starts with its own last backward (Megatron-Core)") {
  ModelProfile m = toy_profile(4);  // one layer per chunk: 2 ms of backward per sample
  for (LayerProfile& l : m.layers) l.params = 1e6;  // 4 MB of fp32 gradients per chunk
  m.total_params = 4e6;
  const Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 4;
  w.bucket_bytes = 1e5;
  Candidate c{.dp = 2, .tp = 1, .pp = 2, .micro_batch = 1, .micro_batches = 2};
  c.schedule = "interleaved";
  c.virtual_stages = 2;
  Features f = Features::full();
  CHECK(!f.grad_sync_per_chunk);  // lib/train starts them with the stage's last backward
  const std::vector<StageProfile> st = profile_stages(m, 4);
  const Prediction stage_end = predict(m, st, hw, w, f, c);
  f.grad_sync_per_chunk = true;
  const Prediction per_chunk = predict(m, st, hw, w, f, c);
  const double backward = 2e-3, bucket = all_reduce_seconds(1e5, 2, hw.intra);
  // Stage 0 ends the step. This trainer: its 8 MB start with its last
  // backward, 2 ms of which hide them.
  CHECK(stage_end.dp_exposed_seconds ==
        doctest::Approx(all_reduce_seconds(8e6, 2, hw.intra) - backward).epsilon(1e-9));
  // Per chunk: chunk 1's last backward ends 2 x 2 ms (chunk 0's backwards of
  // the last group of p = 2 micro-batches) before the stage's and its 4 MB
  // start 2 ms before that; chunk 0's follow on the link from its end.
  const double chunk = all_reduce_seconds(4e6, 2, hw.intra);
  const double chunk1 = std::max(-3 * backward + chunk, -2 * backward + bucket);
  const double chunk0 = std::max(std::max(chunk1, -backward) + chunk, bucket);
  CHECK(per_chunk.dp_exposed_seconds == doctest::Approx(chunk0).epsilon(1e-9));
  CHECK(per_chunk.dp_exposed_seconds < stage_end.dp_exposed_seconds - 3e-3);
  CHECK(per_chunk.pipeline_seconds == stage_end.pipeline_seconds);
  // Without interleaving the option changes nothing.
  c.schedule = "1f1b";
  c.virtual_stages = 1;
  const std::vector<StageProfile> two = profile_stages(m, 2);
  CHECK(predict(m, two, hw, w, f, c).step_seconds == predict(m, two, hw, w, Features::full(), c).step_seconds);
}

TEST_CASE("this trainer's GPT with dropout: the embedding keeps its output before the dropout, per copy") {
  // lib/model/embedding.cpp: the rows are looked up into an output of the
  // embedding's own; with model.dropout > 0 the dropout writes the first
  // block's input into another (the block counts that one). apps/dtrain/
  // profile.cpp counts the same against the allocator.
  ModelConfig cfg = gpt(4, 64, 4, 256, 32);
  const ModelProfile plain = profile_model(cfg, 32, 1, false);
  cfg.dropout = 0.1;
  const ModelProfile drop = profile_model(cfg, 32, 1, false);
  CHECK(!plain.dropout);
  CHECK(drop.dropout);
  const Hardware hw = toy_hardware(2);
  Workload w;
  w.global_batch = 4;
  w.precision = "fp32";
  Candidate c{.dp = 1, .tp = 1, .pp = 2, .micro_batch = 2, .micro_batches = 2};
  const Features f = Features::this_trainer();
  const Memory a = predict(plain, profile_stages(plain, 2), hw, w, f, c).memory;
  const Memory b = predict(drop, profile_stages(drop, 2), hw, w, f, c).memory;
  REQUIRE(a.stage == 0);
  REQUIRE(b.stage == 0);
  // Stage 0 keeps both micro-batches (1F1B over 2 stages) of 2 samples:
  // per copy the layers' kept bytes grow by the dropouts' (masks), the
  // embedding's dropout's input gradient, and the embedding's output before
  // its dropout; the blocks' shared work buffers (once) by their dropouts'.
  const std::vector<StageProfile> sa = profile_stages(plain, 2), sb = profile_stages(drop, 2);
  const double kept = sb[0].act_bytes - sa[0].act_bytes;
  const double embed_work = drop.layers[0].work_bytes - plain.layers[0].work_bytes;
  const double shared = sb[0].max_layer_work_bytes - sa[0].max_layer_work_bytes;
  const double embed_out = drop.layers[0].out_bytes;
  CHECK(embed_out == 32 * 64 * 4);
  CHECK(b.activations - a.activations == doctest::Approx(2 * 2 * (kept + embed_work + embed_out) + 2 * shared));
}

TEST_CASE("sequence parallelism's regather: counted per runtime, hidden behind at most the input gradients' products") {
  // A block gathers its two products' inputs again in backward (half an
  // all-reduce of (T, C) each per sample), but not after this trainer's full
  // recomputation; Megatron-LM gathers them in every backward.
  const ModelConfig cfg = gpt(4, 64, 4, 256, 32);
  const ModelProfile m = profile_model(cfg, 32, 2, true);
  double regather = 0;
  for (const LayerProfile& l : m.layers) regather += l.tp_regather_bytes;
  CHECK(regather == 4 * 2 * (32 * 64 * 4) / 2);
  ModelProfile without = m;
  for (LayerProfile& l : without.layers) l.tp_regather_calls = l.tp_regather_bytes = 0;
  Hardware hw = toy_hardware(2);
  Workload w;
  w.global_batch = 2;
  w.precision = "fp32";
  Candidate c{.dp = 1, .tp = 2, .pp = 1, .micro_batch = 1, .micro_batches = 2, .sequence_parallel = true};
  Features f = Features::this_trainer();
  auto run = [&](const ModelProfile& x) { return predict(x, profile_stages(x, 1), hw, w, f, c); };
  // Bytes each device sends: 2 (t - 1)/t = 1 times the payload, 2 micro-batches.
  CHECK(run(m).tp_bytes - run(without).tp_bytes == doctest::Approx(2 * regather));
  c.recompute = Recompute::full;
  CHECK(run(m).tp_bytes == doctest::Approx(run(without).tp_bytes));
  f.sp_regather_after_recompute = true;
  CHECK(run(m).tp_bytes - run(without).tp_bytes == doctest::Approx(2 * regather));
  // Time: exposed in full with no overlap.
  c.recompute = Recompute::none;
  hw.overlap = 0;
  const double raw = 8 * 0.5 * 2 * 10e-6 + regather / 1e9;  // a micro-batch's: 8 half calls, t - 1 steps each
  CHECK(run(m).tp_seconds - run(without).tp_seconds == doctest::Approx(2 * raw));
  // Overlap 1: hidden behind the input gradients' products (half the
  // backward's), but never behind more: at 1 TFLOP/s they take less than it.
  hw.overlap = 1;
  double dgrad = 0;
  const std::vector<StageProfile> stages = profile_stages(m, 1);  // (a temporary's member would dangle)
  for (const Gemm& g : stages[0].gemms)
    dgrad += 0.5 * g.bwd_flops / (hw.peak_fp32 * hw.gemm_efficiency(g.rows > 0 ? std::min(g.rows, g.dim) : g.dim));
  REQUIRE(dgrad < raw);
  CHECK(run(m).tp_seconds - run(without).tp_seconds == doctest::Approx(2 * (raw - dgrad)));
  // At 1 GFLOP/s they outlast it: all of it hidden.
  hw.peak_fp32 = 2e9;
  CHECK(run(m).tp_seconds == doctest::Approx(run(without).tp_seconds));
}

TEST_CASE("the layers' batch-independent scratch: once per buffer, not once per sample") {
  // A layer norm keeps chunk scratch of its width whatever the batch: the
  // planned activations grow by the same step per sample, and what remains
  // at batch 0 is the blocks' largest (their shared set) and the others'.
  const ModelConfig cfg = gpt(2, 64, 4, 256, 32);
  const ModelProfile m = profile_model(cfg, 32, 1, false);
  CHECK(m.layers[1].work_fixed_bytes > 0);  // a block's two norms (the CPU attention's: stat_fixed_bytes)
  const Hardware hw = toy_hardware(2);
  Workload w;
  w.precision = "fp32";
  const Features f = Features::this_trainer();
  auto act = [&](int b) {
    w.global_batch = b;
    const Candidate c{.dp = 1, .tp = 1, .pp = 1, .micro_batch = b, .micro_batches = 1};
    return predict(m, profile_stages(m, 1), hw, w, f, c).memory.activations;
  };
  const double step = act(2) - act(1);
  CHECK(act(3) - act(2) == doctest::Approx(step));
  const StageProfile st = profile_stages(m, 1)[0];
  CHECK(act(1) - step ==
        doctest::Approx(st.max_block_work_fixed_bytes + st.max_block_stat_fixed_bytes + st.own_work_fixed_bytes));
  CHECK(st.max_block_stat_fixed_bytes > 0);  // the CPU attention's, in fp32
}

TEST_CASE("hidden communication takes its share of the compute it hides behind") {
  // A collective hidden behind a pass still holds SMs (NCCL: a CTA per
  // channel): hiding T seconds costs share x T, the exposed rest as before.
  ModelProfile m = toy_profile(2);
  for (LayerProfile& l : m.layers) l.params = 5e6;  // 40 MB of fp32 gradients
  Hardware hw = toy_hardware();
  Workload w;
  w.global_batch = 8;
  w.bucket_bytes = 4e6;
  const Features f = Features::full();
  const Candidate c{.dp = 2, .tp = 1, .pp = 1, .micro_batch = 2, .micro_batches = 2};
  const double reduce = all_reduce_seconds(40e6, 2, hw.intra);
  const double backward = 2 * 2 * 2e9 / 1e12;  // the last micro-batch's, 8 ms: all of it hides
  const Prediction free_overlap = predict(m, profile_stages(m, 1), hw, w, f, c);
  hw.comm_compute_share = 0.25;
  const Prediction taxed = predict(m, profile_stages(m, 1), hw, w, f, c);
  CHECK(taxed.dp_exposed_seconds == doctest::Approx(reduce - backward + 0.25 * backward));
  CHECK(taxed.pipeline_seconds == doctest::Approx(free_overlap.pipeline_seconds));
  // Nothing hidden, nothing taken.
  hw.overlap = 0;
  CHECK(predict(m, profile_stages(m, 1), hw, w, f, c).dp_exposed_seconds == doctest::Approx(reduce));

  // Tensor parallelism's overlapped collectives: the runtime's own share
  // (tp_comm_compute_share), comm_compute_share's where it says none.
  const ModelConfig cfg = gpt(2, 64, 4, 256, 32);
  const ModelProfile g = profile_model(cfg, 32, 2, false);
  Hardware h2 = toy_hardware(2);
  h2.tp_overlap = 0.5;
  Workload w2;
  w2.global_batch = 2;
  w2.precision = "fp32";
  const Candidate c2{.dp = 1, .tp = 2, .pp = 1, .micro_batch = 1, .micro_batches = 2};
  auto tp = [&](const Hardware& hw2) {
    return predict(g, profile_stages(g, 1), hw2, w2, Features::full(), c2).tp_seconds;
  };
  const double half_exposed = tp(h2);  // half of the raw time
  h2.comm_compute_share = 0.2;
  CHECK(tp(h2) == doctest::Approx(half_exposed * 1.2));
  h2.tp_comm_compute_share = 0.1;
  CHECK(tp(h2) == doctest::Approx(half_exposed * 1.1));
  h2.tp_comm_compute_share = 0;
  CHECK(tp(h2) == doctest::Approx(half_exposed));
}

TEST_CASE("the CUDA attention's work space is planned as lib/kernels/cuda lays it out, its score chunk in fp32") {
  // Per block and micro-batch of B sequences, the CUDA backend's attention
  // holds 7 head-major (B s h/t) copies in the activation dtype and one fp32
  // chunk of score matrices (cuda::attn_layout); the CPU kernels per-thread
  // fp32 buffers. The planner's bytes at a micro-batch of B in bf16 (the
  // per-sample part halved, the fp32 part not) against the layout itself.
  for (const auto& [tp, kv] : {std::pair{1, 12}, {2, 12}, {1, 4}, {2, 4}}) {
    ModelConfig cfg = gpt(2, 768, 12, 50304, 1024);
    cfg.n_kv_head = kv;
    CAPTURE(tp);
    CAPTURE(kv);
    const ModelProfile cpu = profile_model(cfg, 1024, tp, false, Kernels::per_op);
    const ModelProfile gpu = profile_model(cfg, 1024, tp, false, Kernels::dtrain_cuda);
    const LayerProfile& a = cpu.layers[1];
    const LayerProfile& g = gpu.layers[1];
    REQUIRE(a.block);
    // The CPU's scratch moved whole from the halved part to the fp32 one.
    const ModelConfig& c = cfg;
    const ops::Heads local{c.n_head / tp, c.kv_heads() / tp};
    const double cpu_scratch =
        static_cast<double>(ops::attention_scratch(Exec::cpu(), Shape{1, 1024, (local.q + 2 * local.kv) * 64}, local,
                                                   DType::f32)) * 4;
    CHECK(cpu_scratch > 0);
    CHECK(a.stat_fixed_bytes == cpu_scratch);
    CHECK(g.work_fixed_bytes == a.work_fixed_bytes);  // the rest the same
    for (int64_t B : {16, 64}) {
      const cuda::AttnLayout l = cuda::attn_layout(B, 1024, 768 / tp, 12 / tp, 2);
      const double planned = (g.work_bytes - a.work_bytes) * static_cast<double>(B) * 0.5 + g.stat_fixed_bytes;
      CAPTURE(B);
      CHECK(planned == doctest::Approx(static_cast<double>(l.bytes)).epsilon(1e-6));
    }
    // A micro-batch of one: fewer heads than a chunk holds, counted as a full chunk (never short).
    CHECK((g.work_bytes - a.work_bytes) * 0.5 + g.stat_fixed_bytes >=
          static_cast<double>(cuda::attn_layout(1, 1024, 768 / tp, 12 / tp, 2).bytes));
  }
}
