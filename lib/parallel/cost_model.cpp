#include "parallel/cost_model.h"

#include <algorithm>
#include <limits>
#include <cmath>

#include "core/error.h"

namespace dtrain {

double ring_all_reduce_seconds(double bytes, int n, const Link& link) {
  if (n <= 1) return 0;
  return 2.0 * (n - 1) * link.latency + 2.0 * (n - 1) / n * bytes / link.bandwidth;
}

double tree_all_reduce_seconds(double bytes, int n, const Link& link) {
  if (n <= 1) return 0;
  return 2.0 * std::ceil(std::log2(static_cast<double>(n))) * link.latency + 2.0 * bytes / link.bandwidth;
}

double all_reduce_seconds(double bytes, int n, const Link& link) {
  if (n <= 1) return 0;
  return std::min(ring_all_reduce_seconds(bytes, n, link), tree_all_reduce_seconds(bytes, n, link));
}

double all_gather_seconds(double bytes, int n, const Link& link) {
  if (n <= 1) return 0;
  return (n - 1) * link.latency + static_cast<double>(n - 1) / n * bytes / link.bandwidth;
}

double p2p_seconds(double bytes, const Link& link) { return link.latency + bytes / link.bandwidth; }

Features Features::this_trainer() {
  Features f;
  f.recompute = true;  // train.recompute = "full" (the GPT; an auto layout sets it when it needs it)
  f.zero1_reduce_scatter = true;  // lib/train/zero.cpp
  f.bf16 = true;  // train.precision = "bf16": fp32 masters, bf16 compute
  f.tp_for_cnn = false;
  return f;
}

Features Features::full() { return Features{}; }

StateBytes state_bytes(const Workload& w) {
  const bool mixed = w.precision == "bf16";
  const bool adam = w.optimizer == "adamw";
  const double states = adam ? 2 : (w.momentum ? 1 : 0);  // fp32 moments per parameter
  StateBytes b;
  b.params = mixed ? 2 : 4;
  b.grads = mixed ? 2 : 4;
  b.optimizer = 4 * states + (mixed ? 4 : 0);  // + the fp32 master copy
  // The update reads the parameter (or master), its gradient and the states,
  // and writes the parameter and the states back; mixed precision also writes
  // the bf16 copy. Both come to 12 + 8 per state (AdamW: 28).
  b.update_traffic = 12 + 8 * states;
  return b;
}

int64_t in_flight_micro_batches(const std::string& schedule, int stage, int stages, int64_t micro_batches) {
  if (stages <= 1) return std::min<int64_t>(1, micro_batches);
  if (schedule == "gpipe") return micro_batches;
  return std::min<int64_t>(stages - stage, micro_batches);
}

double shared_pipeline_seconds(const std::vector<double>& work, int64_t micro_batches, double share) {
  const auto p = static_cast<int64_t>(work.size());
  if (p == 0 || micro_batches <= 0) return 0;
  const double units = static_cast<double>(p) / std::max(share, 1e-12);  // this pipeline's part of the node
  const double longest = *std::max_element(work.begin(), work.end());
  double sum = 0;
  for (double x : work) sum += x;
  // The flow shop of identical micro-batches, (m - 1) max + sum, is where the
  // sharing starts (share <= 1); beyond it the units bound the whole step.
  const double unshared = static_cast<double>(micro_batches - 1) * longest + sum;
  if (static_cast<double>(micro_batches) * static_cast<double>(p * p) > 4e6)  // a bound, not the simulation
    return std::max(unshared, static_cast<double>(micro_batches) * sum / units);
  // Event by event: stage s starts micro-batch i once it finished i - 1 and
  // stage s - 1 finished i; the busy stages share the units equally, none
  // faster than a whole unit.
  std::vector<int64_t> done(static_cast<size_t>(p), 0);
  std::vector<double> left(static_cast<size_t>(p), -1.0);  // work left of the running micro-batch; < 0: idle
  double t = 0;
  for (;;) {
    int64_t busy = 0;
    for (int64_t s = 0; s < p; ++s) {
      const auto i = static_cast<size_t>(s);
      if (left[i] < 0 && done[i] < micro_batches && (s == 0 || done[i - 1] > done[i])) left[i] = work[i];
      if (left[i] >= 0) ++busy;
    }
    if (busy == 0) break;
    const double rate = std::min(1.0, units / static_cast<double>(busy));
    double step = std::numeric_limits<double>::infinity();
    for (double l : left)
      if (l >= 0) step = std::min(step, l / rate);
    t += step;
    for (size_t i = 0; i < left.size(); ++i) {
      if (left[i] < 0) continue;
      if (left[i] / rate <= step * (1 + 1e-12)) {
        left[i] = -1.0;
        ++done[i];
      } else {
        left[i] -= step * rate;
      }
    }
  }
  return t;
}

Prediction predict(const ModelProfile& model, const std::vector<StageProfile>& stages,
                   const Hardware& hw, const Workload& w, const Features& f, const Candidate& c) {
  DTRAIN_CHECK(static_cast<int>(stages.size()) == c.pp && model.tp == c.tp, "profile of tp={} pp={} for {}",
               model.tp, stages.size(), c.pp);
  const int p = c.pp, t = c.tp, d = c.dp;
  const double b = static_cast<double>(c.micro_batch);
  const double m = static_cast<double>(c.micro_batches);
  const double e = w.precision == "bf16" ? 0.5 : 1.0;  // activation bytes relative to the layers' fp32 count
  const double rate = hw.peak(w.precision) * hw.efficiency;
  const StateBytes sb = state_bytes(w);
  const Link& tp_link = hw.link(t);
  const Link& dp_link = hw.link(static_cast<long long>(t) * d);
  const Link& pp_link = hw.link(c.devices());  // neighbouring stages are t * d ranks apart

  // Tensor-parallel all-reduces of `calls` messages, `bytes` in all (ring).
  auto tp_time = [&](double calls, double bytes) {
    if (t <= 1 || calls == 0) return 0.0;
    return calls * 2.0 * (t - 1) * tp_link.latency + 2.0 * (t - 1) / t * bytes / tp_link.bandwidth;
  };

  // Per micro-batch and stage: forward, backward, and the receives that
  // precede them (activations from the stage before, gradients from the one after).
  std::vector<double> tf(p), tb(p), xfer(p, 0.0), work(p), comp(p), tpt(p), ppt(p);
  for (int s = 0; s < p; ++s) {
    const StageProfile& st = stages[s];
    const double layers = static_cast<double>(st.layers());
    const double fwd_compute = b * st.fwd_flops / rate, bwd_compute = b * st.bwd_flops / rate;
    const double fwd_tp = tp_time(st.tp_fwd_calls, b * st.tp_fwd_bytes * e);
    const double bwd_tp = tp_time(st.tp_bwd_calls, b * st.tp_bwd_bytes * e);
    tf[s] = layers * hw.layer_overhead + fwd_compute + fwd_tp;
    tb[s] = layers * hw.layer_overhead + bwd_compute + bwd_tp + (c.recompute ? tf[s] : 0.0);
    comp[s] = fwd_compute + bwd_compute + (c.recompute ? fwd_compute : 0.0);
    tpt[s] = fwd_tp + bwd_tp + (c.recompute ? fwd_tp : 0.0);
    // Between s and s + 1; the receiver waits for it (handoff_latency: it must be scheduled again).
    if (s + 1 < p) xfer[s] = p2p_seconds(b * st.out_bytes * e, pp_link) + hw.handoff_latency;
  }
  for (int s = 0; s < p; ++s) {
    ppt[s] = (s > 0 ? xfer[s - 1] : 0.0) + (s + 1 < p ? xfer[s] : 0.0);
    work[s] = tf[s] + tb[s] + ppt[s];
  }
  // Pipeline: the slowest stage sets the pace of the steady state; filling and
  // draining cost one pass through every stage: (m - 1) max_s w_s + sum_s w_s,
  // = (m + p - 1) w for balanced stages (Narayanan et al. 2021, eq. 1).
  const int busiest = static_cast<int>(std::max_element(work.begin(), work.end()) - work.begin());
  double total_work = 0;
  for (double x : work) total_work += x;
  Prediction r;
  r.c = c;
  r.pipeline_seconds = (m - 1) * work[busiest] + total_work;
  // Devices sharing compute units (MPI ranks sharing CPU cores) each run at a
  // whole unit's rate while the others wait, but together they cannot be
  // busier than the node's units: the schedule simulated with the busy
  // stages sharing the units (shared_pipeline_seconds).
  const double share = static_cast<double>(std::min(c.devices(), hw.devices_per_node)) / hw.units();
  if (share > 1) r.pipeline_seconds = shared_pipeline_seconds(work, c.micro_batches, share);
  r.compute_seconds = m * comp[busiest];
  r.tp_seconds = m * tpt[busiest];
  r.pp_seconds = m * ppt[busiest];
  r.bubble_fraction = 1.0 - m * work[busiest] / r.pipeline_seconds;
  r.ideal_bubble = (p - 1) / m;

  // Data-parallel gradient reduction, started bucket by bucket during each
  // stage's last backward: hidden behind `overlap` of that backward, never
  // less than the last bucket's own time. Stage s's last backward ends when
  // the backward wave has still to pass the stages before it.
  double comm_end = r.pipeline_seconds, optimizer = 0, dp_bytes = 0, tp_bytes = 0, pp_bytes = 0;
  double before = 0;  // backward and transfers of the stages before s in the last micro-batch
  for (int s = 0; s < p; ++s) {
    const StageProfile& st = stages[s];
    const double grad_bytes = st.params * sb.grads;
    const bool scatter = c.zero >= 1 && f.zero1_reduce_scatter;
    double reduce = 0, last_bucket = 0;
    if (d > 1) {
      const double bucket = std::min(grad_bytes, w.bucket_bytes);
      reduce = scatter ? all_gather_seconds(grad_bytes, d, dp_link) : all_reduce_seconds(grad_bytes, d, dp_link);
      // ZeRO-3 also gathers every layer's parameters before its forward and
      // its backward, each micro-batch (the next layer's prefetched).
      if (c.zero == 3) reduce += 2.0 * static_cast<double>(c.micro_batches) * all_gather_seconds(st.params * sb.params, d, dp_link);
      last_bucket = scatter ? all_gather_seconds(bucket, d, dp_link) : all_reduce_seconds(bucket, d, dp_link);
    }
    const double end_of_backward = r.pipeline_seconds - before;
    const double hidden = w.overlap ? hw.overlap * tb[s] : 0.0;
    comm_end = std::max(comm_end, end_of_backward + std::max(last_bucket, reduce - hidden));
    before += tb[s] + xfer[s];

    // The update: per-parameter passes at memory bandwidth (zeroing and the
    // norm read every gradient; the optimizer touches its shard), then the
    // ZeRO-1 all-gather of the updated parameters.
    const double owned = c.zero >= 1 && d > 1 ? std::ceil(st.params / d) : st.params;
    double update = (owned * sb.update_traffic + 2 * st.params * sb.grads) / hw.memory_bandwidth *
                    std::max(1.0, share);  // every device of the node updates at once
    if ((c.zero == 1 || c.zero == 2) && d > 1) update += all_gather_seconds(st.params * sb.params, d, dp_link);
    optimizer = std::max(optimizer, update);

    double dp_sent = 0;
    if (d > 1) {
      // ZeRO-2 reduce-scatters each micro-batch's gradients (lib/train/zero.h).
      const double scatters = c.zero >= 2 ? static_cast<double>(c.micro_batches) : 1.0;
      dp_sent = (scatter ? scatters : 2.0) * (d - 1) / d * grad_bytes;
      // ZeRO-1/2: the updated parameters all-gathered once; ZeRO-3: each
      // micro-batch's two gathers per layer (forward, backward), 1.5x plain
      // dp's all-reduce volume at one micro-batch.
      const double gathers = c.zero == 3 ? 2.0 * static_cast<double>(c.micro_batches) : c.zero >= 1 ? 1.0 : 0.0;
      dp_sent += gathers * (d - 1) / d * st.params * sb.params;
    }
    dp_bytes = std::max(dp_bytes, dp_sent);
    const double tp_payload = b * e * (st.tp_fwd_bytes * (c.recompute ? 2 : 1) + st.tp_bwd_bytes);
    tp_bytes = std::max(tp_bytes, t > 1 ? m * 2.0 * (t - 1) / t * tp_payload : 0.0);
    const double sent = b * e * ((s + 1 < p ? st.out_bytes : 0.0) + (s > 0 ? stages[s - 1].out_bytes : 0.0));
    pp_bytes = std::max(pp_bytes, m * sent);
  }
  r.dp_exposed_seconds = comm_end - r.pipeline_seconds;
  if (p > 1 && stages.back().holds_tied_copy)
    r.embed_seconds = all_reduce_seconds(model.tied_params * sb.grads, 2, pp_link);
  // The step's scalar agreements: the loss over dp and pp, the gradient norm
  // over tp and pp (latency only).
  const double scalars = all_reduce_seconds(8, d, dp_link) + all_reduce_seconds(8, p, pp_link) * 2 +
                         all_reduce_seconds(8, t, tp_link);
  r.optimizer_seconds = optimizer + scalars;
  r.step_seconds = r.pipeline_seconds + r.dp_exposed_seconds + r.embed_seconds + r.optimizer_seconds;

  // Memory of the fullest device.
  for (int s = 0; s < p; ++s) {
    const StageProfile& st = stages[s];
    Memory mem;
    mem.stage = s;
    // ZeRO-3: the 1/d shard plus two gather windows of the largest layer,
    // and the tied embedding's resident copy where the stage reads it.
    const double tied = s == 0 || st.holds_tied_copy ? model.tied_params : 0.0;
    // ZeRO-2/3's windows: the largest layer's parameters, the embedding's
    // without the tied wte (resident, counted once above).
    double window = 0;
    for (int64_t i = st.first_layer; i < st.last_layer; ++i)
      window = std::max(window, model.layers[static_cast<size_t>(i)].params - (i == 0 ? model.tied_params : 0.0));
    mem.params = c.zero == 3 && d > 1 ? (std::ceil(st.params / d) + 2 * window + tied) * sb.params
                                      : st.params * sb.params;
    // ZeRO-2, 3: this rank's 1/d shard plus two windows of the largest layer's
    // gradients, and the tied embedding's resident gradient where the stage holds it.
    mem.grads = c.zero >= 2 && d > 1 ? (std::ceil(st.params / d) + 2 * window + tied) * sb.grads
                                     : st.params * sb.grads;
    mem.optimizer = (c.zero >= 1 && d > 1 ? std::ceil(st.params / d) : st.params) * sb.optimizer;
    const double k = static_cast<double>(in_flight_micro_batches(c.schedule, s, p, c.micro_batches));
    // Each micro-batch in flight keeps its activations (under recomputation
    // only the layers' inputs) and one set of work buffers, the blocks
    // sharing theirs; recomputation remakes one layer's activations at a time.
    mem.activations = c.recompute ? (k * b * (st.in_bytes + st.max_layer_work_bytes) + b * st.max_layer_act_bytes) * e
                                  : k * b * (st.act_bytes + st.max_layer_work_bytes) * e;
    if (s == 0 || mem.total() > r.memory.total()) r.memory = mem;
  }
  r.capacity = hw.memory_bytes * hw.usable_memory_fraction;

  const double items = static_cast<double>(w.global_batch) * static_cast<double>(model.items_per_sample);
  r.tokens_per_second = items / r.step_seconds;
  r.mfu = static_cast<double>(w.global_batch) * model.model_flops_per_sample /
          (r.step_seconds * c.devices() * hw.peak(w.precision));
  r.tp_bytes = tp_bytes;
  r.pp_bytes = pp_bytes;
  r.dp_bytes = dp_bytes;
  return r;
}

}  // namespace dtrain
