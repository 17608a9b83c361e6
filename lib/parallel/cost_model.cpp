#include "parallel/cost_model.h"

#include <algorithm>
#include <limits>
#include <cmath>

#include "core/error.h"
#include "parallel/pipeline.h"

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
  f.recompute = true;   // train.recompute = "full"
  f.selective = true;   // train.recompute = "selective"
  f.zero1_reduce_scatter = true;  // lib/train/zero.cpp
  f.max_zero = 3;       // parallel.zero = 3: lib/train/zero.h
  f.interleaved = true; // parallel.schedule = "interleaved"
  f.sequence_parallel = true;
  f.bf16 = true;  // train.precision = "bf16": fp32 masters, bf16 compute
  f.tp_for_cnn = false;
  f.grad_bytes = 4;            // fp32 gradients under bf16 too (lib/model/param.cpp: the master dtype)
  f.zero1_grad_shard = true;   // lib/train/zero.h: ZeRO-1's reduced shard beside the full buffer
  return f;
}

Features Features::full() { return Features{}; }

const char* recompute_name(Recompute r) {
  return r == Recompute::full ? "full" : r == Recompute::selective ? "selective" : "none";
}

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

std::vector<int64_t> interleaved_in_flight(int stage, int stages, int64_t micro_batches, int chunks) {
  const int64_t m = std::min<int64_t>(micro_batches, 2 * static_cast<int64_t>(stages));
  const std::vector<PipeOp> ops = pipeline_schedule("interleaved", stage, stages, static_cast<int>(m), chunks);
  std::vector<int64_t> out(static_cast<size_t>(chunks));
  for (int c = 0; c < chunks; ++c) out[static_cast<size_t>(c)] = in_flight(ops, c);
  return out;
}

namespace {

// The interleaved schedule's ops, enough of them for its most at once.
std::vector<PipeOp> interleaved_ops(int stage, int stages, int64_t micro_batches, int chunks) {
  // m is a multiple of stages (the schedule's rule), so is the cap.
  const int64_t m = std::min<int64_t>(micro_batches, 4 * static_cast<int64_t>(stages));
  return pipeline_schedule("interleaved", stage, stages, static_cast<int>(m), chunks);
}

double peak_bytes(const std::vector<PipeOp>& ops, const std::vector<double>& per_copy) {
  double now = 0, most = 0;
  for (const PipeOp& op : ops) {
    now += (op.kind == PipeOp::Kind::forward ? 1 : -1) * per_copy[static_cast<size_t>(op.chunk)];
    most = std::max(most, now);
  }
  return most;
}

}  // namespace

double interleaved_peak_bytes(int stage, int stages, int64_t micro_batches, const std::vector<double>& per_copy) {
  return peak_bytes(interleaved_ops(stage, stages, micro_batches, static_cast<int>(per_copy.size())), per_copy);
}

double shared_pipeline_seconds(const std::vector<std::vector<PipeOp>>& ops, const std::vector<double>& fwd,
                               const std::vector<double>& bwd, double units) {
  const auto p = static_cast<int>(ops.size());
  const auto nc = static_cast<int>(fwd.size());
  DTRAIN_CHECK(p >= 1 && nc % p == 0 && bwd.size() == fwd.size() && units > 0,
               "pipeline of {} stages with {} forward and {} backward times on {} units", p, fwd.size(), bwd.size(),
               units);
  // Within a chunk forwards and backwards each run in micro-batch order, so
  // how many of each a virtual stage finished says which are done.
  std::vector<int> fdone(static_cast<size_t>(nc), 0), bdone(static_cast<size_t>(nc), 0);
  std::vector<size_t> next(static_cast<size_t>(p), 0);
  std::vector<double> left(static_cast<size_t>(p), -1.0);  // work left of the running op; < 0: idle
  auto ready = [&](int s, const PipeOp& op) {
    const int k = op.chunk * p + s;
    if (op.kind == PipeOp::Kind::forward) return k == 0 || fdone[static_cast<size_t>(k - 1)] > op.micro;
    return (k == nc - 1 ? fdone[static_cast<size_t>(k)] : bdone[static_cast<size_t>(k + 1)]) > op.micro;
  };
  double t = 0;
  for (;;) {
    int busy = 0;
    bool left_over = false;
    for (int s = 0; s < p; ++s) {
      const auto i = static_cast<size_t>(s);
      if (left[i] < 0 && next[i] < ops[i].size() && ready(s, ops[i][next[i]])) {
        const PipeOp& op = ops[i][next[i]];
        const auto k = static_cast<size_t>(op.chunk * p + s);
        left[i] = op.kind == PipeOp::Kind::forward ? fwd[k] : bwd[k];
      }
      if (left[i] >= 0) ++busy;
      left_over = left_over || next[i] < ops[i].size();
    }
    if (busy == 0) {
      DTRAIN_CHECK(!left_over, "pipeline schedule of {} stages deadlocks", p);
      break;
    }
    const double rate = std::min(1.0, units / static_cast<double>(busy));
    double step = std::numeric_limits<double>::infinity();
    for (double l : left)
      if (l >= 0) step = std::min(step, l / rate);
    t += step;
    for (int s = 0; s < p; ++s) {
      const auto i = static_cast<size_t>(s);
      if (left[i] < 0) continue;
      if (left[i] / rate <= step * (1 + 1e-12)) {
        const PipeOp& op = ops[i][next[i]];
        const auto k = static_cast<size_t>(op.chunk * p + s);
        ++(op.kind == PipeOp::Kind::forward ? fdone : bdone)[k];
        left[i] = -1.0;
        ++next[i];
      } else {
        left[i] -= step * rate;
      }
    }
  }
  return t;
}

// 1F1B's steady state repeats every `period` micro-batches (the interleaved
// schedule's groups of p, twice over); the warm-up and the drain are the same
// at any length past them. GPipe has no steady state (every forward, then
// every backward): simulated whole.
int64_t simulated_micro_batches(const std::string& schedule, int stages, int64_t micro_batches) {
  return schedule == "gpipe" ? micro_batches : std::min<int64_t>(micro_batches, kSimulatedPeriods * 2 * stages);
}

double shared_schedule_seconds(const std::string& schedule, int stages, int64_t micro_batches, int chunks,
                               const std::vector<double>& fwd, const std::vector<double>& bwd, double units) {
  auto simulate = [&](int64_t m) {
    std::vector<std::vector<PipeOp>> ops(static_cast<size_t>(stages));
    for (int s = 0; s < stages; ++s)
      ops[static_cast<size_t>(s)] = pipeline_schedule(schedule, s, stages, static_cast<int>(m), chunks);
    return shared_pipeline_seconds(ops, fwd, bwd, units);
  };
  const int64_t longer = simulated_micro_batches(schedule, stages, micro_batches);
  if (longer == micro_batches) return simulate(micro_batches);
  const int64_t period = 2 * static_cast<int64_t>(stages);
  const double a = simulate(longer - period), b = simulate(longer);
  return b + (b - a) / static_cast<double>(period) * static_cast<double>(micro_batches - longer);
}

Prediction predict(const ModelProfile& model, const std::vector<StageProfile>& chunks, const Hardware& hw,
                   const Workload& w, const Features& f, const Candidate& c) {
  const int v = c.chunks();
  DTRAIN_CHECK(static_cast<int>(chunks.size()) == c.pp * v && model.tp == c.tp,
               "profile of tp={} with {} chunks for tp={} pp={} x {}", model.tp, chunks.size(), c.tp, c.pp, v);
  const int p = c.pp, t = c.tp, d = c.dp, nc = p * v;
  if (f.host_checkpoints && c.recompute == Recompute::full && !(hw.host_bandwidth > 0))
    throw ConfigError(fmt::format("hardware '{}' gives no host bandwidth ([node] host_bandwidth_gbs), which "
                                  "checkpoints kept in host memory need",
                                  hw.name));
  const double b = static_cast<double>(c.micro_batch);
  const double m = static_cast<double>(c.micro_batches);
  const double e = w.precision == "bf16" ? 0.5 : 1.0;  // activation bytes relative to the layers' fp32 count
  const double peak = hw.peak(w.precision);
  StateBytes sb = state_bytes(w);
  if (f.grad_bytes > 0) sb.grads = f.grad_bytes;
  const double wire = f.grad_reduce_bytes > 0 ? f.grad_reduce_bytes : sb.grads;  // per parameter reduced
  const Link& tp_link = hw.link(t);
  const Link dp_link = hw.group_link(t, d);
  const Link& pp_link = hw.link(c.devices());  // neighbouring stages are t * d ranks apart
  const bool fused = hw.fused_attention;
  const bool scatter = c.zero >= 1 && f.zero1_reduce_scatter;
  // The data-parallel all-reduce overlaps the backward (Features::overlap_without_pipeline_only).
  const bool dp_overlap = w.overlap && !(f.overlap_without_pipeline_only && p > 1);
  // Sequence parallelism's second gather of the products' inputs in backward
  // (Cost::tp_regather_calls): but under this trainer's full recomputation.
  const bool regather = c.recompute != Recompute::full || f.sp_regather_after_recompute;

  // Matrix products of one micro-batch at their shapes' rates; memory-bound
  // passes at the memory bandwidth.
  // A fused attention skips the causal mask's upper tiles: half the work of
  // the per-head products (Gemm::causal).
  const double causal_work = fused ? 0.5 : 1.0;
  auto gemm_seconds = [&](const std::vector<Gemm>& gemms, bool forward) {
    double sec = 0;
    for (const Gemm& g : gemms) {
      const double x = g.rows > 0 ? std::min(b * g.rows, g.dim) : g.dim;
      sec += b * (forward ? g.fwd_flops : g.bwd_flops) * (g.causal ? causal_work : 1.0) /
             (peak * hw.gemm_efficiency(x));
    }
    return sec;
  };
  auto mem_seconds = [&](double bytes) { return b * bytes * e / hw.memory_bandwidth; };
  // Tensor-parallel all-reduces of `calls` messages, `bytes` in all (ring),
  // less what the runtime hides behind the products.
  // Hardware::tp_bandwidth, where measured, is what those all-reduces get
  // inside a step; sp_bandwidth what sequence parallelism's reduce-scatters
  // and all-gathers get.
  const double tp_bandwidth = c.sequence_parallel && hw.sp_bandwidth > 0 ? hw.sp_bandwidth
                              : hw.tp_bandwidth > 0                      ? hw.tp_bandwidth
                                                                         : tp_link.bandwidth;
  // A collective hidden behind compute still takes its share of the device's
  // compute while it runs (Hardware::comm_compute_share): `hidden` seconds of
  // it cost `share x hidden`.
  auto behind = [&](double comm, double hidden, double share) {
    const double h = std::clamp(hidden, 0.0, comm);
    return comm - h + share * h;
  };
  auto tp_time = [&](double calls, double bytes, double overlap) {
    if (t <= 1 || calls == 0) return 0.0;
    const double raw = calls * 2.0 * (t - 1) * tp_link.latency + 2.0 * (t - 1) / t * bytes / tp_bandwidth;
    return behind(raw, overlap * raw, hw.tp_share());
  };

  // Per micro-batch and chunk: forward, backward (with what recomputation
  // adds), the matrix-product and memory-bound parts, tp time.
  std::vector<double> tf(nc), tb(nc), comp(nc), memt(nc), tpt(nc), z3(nc, 0.0), host(nc, 0.0);
  for (int k = 0; k < nc; ++k) {
    const StageProfile& st = chunks[k];
    const double layers = static_cast<double>(st.layers());
    const double fwd_gemm = gemm_seconds(st.gemms, true), bwd_gemm = gemm_seconds(st.gemms, false);
    // A fused attention keeps no scores: its backward computes Q K^T again.
    const double remake_scores =
        fused && st.selective_flops > 0
            ? b * st.selective_flops * causal_work / (peak * hw.gemm_efficiency(st.selective_dim))
            : 0.0;
    const double fwd_mem = mem_seconds(st.mem_fwd + (fused ? 0.0 : st.score_mem_fwd));
    const double bwd_mem = mem_seconds(st.mem_bwd + (fused ? 0.0 : st.score_mem_bwd));
    const double fwd_tp = tp_time(st.tp_fwd_calls, b * st.tp_fwd_bytes * e, hw.tp_overlap);
    // Sequence parallelism's second gather of each product's input
    // (Cost::tp_regather_calls) runs behind that product's input gradient,
    // in this trainer (Linear::defer_input) as in Megatron-LM: a non-blocking
    // collective waited for later, hidden as the runtime hides its others
    // (Hardware::overlap, the data-parallel reduction's mechanism), and never
    // behind more than the input gradients' products (half the backward's).
    // Under full recomputation this trainer's re-run forward has just
    // gathered them (Features::sp_regather_after_recompute).
    const double regather_raw = regather ? tp_time(st.tp_regather_calls, b * st.tp_regather_bytes * e, 0.0) : 0.0;
    const double regather_tp =
        behind(regather_raw, std::min(std::max(hw.tp_overlap, hw.overlap) * regather_raw, 0.5 * bwd_gemm), hw.tp_share());
    const double bwd_tp = tp_time(st.tp_bwd_calls, b * st.tp_bwd_bytes * e, hw.tp_overlap) + regather_tp;
    tf[k] = layers * hw.layer_overhead + fwd_gemm + fwd_mem + fwd_tp;
    tb[k] = layers * hw.layer_overhead + bwd_gemm + remake_scores + bwd_mem + bwd_tp;
    comp[k] = fwd_gemm + bwd_gemm + remake_scores;
    memt[k] = fwd_mem + bwd_mem;
    tpt[k] = fwd_tp + bwd_tp;
    // Gradient accumulation over the micro-batches (Features::
    // grad_accumulation_bytes): a pass over the chunk's parameters in every
    // backward but the first micro-batch's, spread evenly here.
    if (f.grad_accumulation_bytes > 0 && c.micro_batches > 1) {
      const double accumulate = st.params * f.grad_accumulation_bytes / hw.memory_bandwidth * (m - 1) / m;
      tb[k] += accumulate;
      memt[k] += accumulate;
    }
    if (c.recompute == Recompute::full) {
      // The blocks' forward again (StageProfile::Blocks): not the embedding,
      // the head or the loss, which keep their activations.
      const StageProfile::Blocks& bl = st.blocks;
      const double gemm = gemm_seconds(bl.gemms, true);
      const double mem = mem_seconds(bl.mem_fwd + (fused ? 0.0 : bl.score_mem_fwd));
      const double tp = tp_time(bl.tp_fwd_calls, b * bl.tp_fwd_bytes * e, hw.tp_overlap);
      tb[k] += static_cast<double>(bl.count) * hw.layer_overhead + gemm + mem + tp;
      comp[k] += gemm;
      memt[k] += mem;
      tpt[k] += tp;
      // Checkpoints kept in host memory (Features::host_checkpoints): each
      // block's input out in the forward and back before the backward, the
      // host waiting for each copy.
      if (f.host_checkpoints) {
        const double copy = b * st.block_in_bytes * e / hw.host_bandwidth;
        tf[k] += copy;
        tb[k] += copy;
        host[k] = 2 * copy;
      }
    } else if (c.recompute == Recompute::selective) {
      // The scores (unless fused: none kept) and GELU's output, remade.
      const double gemm = fused ? 0.0 : b * st.selective_flops / (peak * hw.gemm_efficiency(st.selective_dim));
      const double mem = mem_seconds(st.selective_mem - (fused ? st.score_mem_fwd : 0.0));
      tb[k] += gemm + mem;
      comp[k] += gemm;
      memt[k] += mem;
    }
    // ZeRO-3: the chunk's parameters all-gathered before its forward and
    // again before its backward, its gradients reduce-scattered after it,
    // every micro-batch; prefetched, so hidden behind `overlap` of the pass.
    if (c.zero == 3 && d > 1) {
      // One collective per gathering unit, each with its ring's latency: a
      // top-level layer, or units of at most zero_unit_params.
      double units = 0, block_units = 0;
      for (int64_t i = st.first_layer; i < st.last_layer; ++i) {
        const LayerProfile& l = model.layers[static_cast<size_t>(i)];
        const double u = f.zero_unit_params > 0 ? std::max(1.0, std::ceil(l.params / f.zero_unit_params)) : 1.0;
        units += u;
        if (l.block) block_units += u;
      }
      // The group's link, or the runtime's own rate where that is lower
      // (Features::zero3_rate).
      const Link z3_link{f.zero3_rate > 0 ? std::min(dp_link.bandwidth, f.zero3_rate) : dp_link.bandwidth,
                         dp_link.latency};
      const double extra_latency = (d - 1) * z3_link.latency;  // per unit beyond the first
      const double gather = all_gather_seconds(st.params * sb.params, d, z3_link) + (units - 1) * extra_latency;
      // One stage holding the embedding and the head gathers the tied
      // embedding for each (the head's backward finds it in its window).
      const double head = model.tied_params > 0 && st.first_layer == 0 &&
                                  st.last_layer == static_cast<int64_t>(model.layers.size())
                              ? all_gather_seconds(model.tied_params * sb.params, d, z3_link)
                              : 0.0;
      const double reduce = all_gather_seconds(st.params * wire, d, z3_link) + (units - 1) * extra_latency;
      const double z3_overlap = f.zero3_overlap >= 0 ? f.zero3_overlap : hw.overlap;
      const double fwd_hidden = z3_overlap * (tf[k] - layers * hw.layer_overhead);
      const double bwd_hidden = z3_overlap * (tb[k] - layers * hw.layer_overhead);
      // Under full recomputation the remade forward gathers the blocks once
      // more (the gather is a pre-forward hook; the backward's is another),
      // unless the runtime keeps them for the backward (zero3_regather_remade).
      const double remade = c.recompute == Recompute::full && f.zero3_regather_remade
                                ? all_gather_seconds(st.blocks.params * sb.params, d, z3_link) +
                                      std::max(0.0, block_units - 1) * extra_latency
                                : 0.0;
      const double xf = behind(gather + head, fwd_hidden, hw.comm_compute_share);
      // The backward's gathers first, then its reductions in what is left of
      // their own share of the pass (Features::zero3_reduce_overlap); with
      // one overlap for both, the two together behind that fraction.
      const double reduce_overlap = f.zero3_reduce_overlap >= 0 ? f.zero3_reduce_overlap : z3_overlap;
      const double bwd_pass = tb[k] - layers * hw.layer_overhead;
      const double gathers_hidden = std::min(gather + remade, bwd_hidden);
      const double reduce_hidden = std::max(0.0, reduce_overlap * bwd_pass - gathers_hidden);
      const double xb = behind(gather + remade, gathers_hidden, hw.comm_compute_share) +
                        behind(reduce, reduce_hidden, hw.comm_compute_share);
      tf[k] += xf;
      tb[k] += xb;
      z3[k] = xf + xb;
    } else if (c.zero == 2 && d > 1 && c.micro_batches > 1) {
      // ZeRO-2 reduce-scatters every micro-batch's gradients during its backward.
      const double reduce = all_gather_seconds(st.params * wire, d, dp_link);
      const double x = behind(reduce, hw.overlap * (tb[k] - layers * hw.layer_overhead), hw.comm_compute_share);
      tb[k] += x * (m - 1) / m;  // the last one is the step's reduction below
      z3[k] = x * (m - 1) / m;
    }
  }

  // Per physical stage: its chunks' work plus receiving its inputs and its
  // output gradients (once per chunk boundary it sits on).
  std::vector<double> work(p, 0.0), xfer(nc, 0.0), stage_tb(p, 0.0), stage_comp(p, 0.0), stage_mem(p, 0.0),
      stage_tp(p, 0.0), stage_pp(p, 0.0), stage_z3(p, 0.0), stage_host(p, 0.0);
  // With scatter/gather each of the t tp ranks sends 1/t of the boundary over
  // its own link and the receiving stage all-gathers the pieces over tp's.
  // Under sequence parallelism the boundary is already split over the tp
  // ranks (a chunk's out_bytes is one rank's part): each sends its own,
  // nothing to gather, with or without the scatter/gather.
  const bool split = f.p2p_scatter_gather && t > 1 && !c.sequence_parallel;
  for (int k = 0; k + 1 < nc && p > 1; ++k) {
    const double bytes = b * chunks[k].out_bytes * e;
    xfer[k] = split ? p2p_seconds(bytes / t, pp_link) + all_gather_seconds(bytes, t, tp_link)
                    : p2p_seconds(bytes, pp_link);
    xfer[k] += hw.handoff_latency;
  }
  for (int k = 0; k < nc; ++k) {
    const int s = k % p;
    const double comm = (k > 0 ? xfer[k - 1] : 0.0) + (k + 1 < nc ? xfer[k] : 0.0);
    work[s] += tf[k] + tb[k] + comm;
    stage_tb[s] += tb[k];
    stage_comp[s] += comp[k];
    stage_mem[s] += memt[k];
    stage_tp[s] += tpt[k];
    stage_pp[s] += comm;
    stage_z3[s] += z3[k];
    stage_host[s] += host[k];
  }
  const int busiest = static_cast<int>(std::max_element(work.begin(), work.end()) - work.begin());
  double total_work = 0;
  for (double x : work) total_work += x;
  Prediction r;
  r.c = c;
  // Pipeline: the slowest stage sets the pace of the steady state; filling and
  // draining cost one pass through every stage, a v-th of it interleaved:
  // (m - 1/v) max_s w_s + sum_s w_s / v = (m + (p - 1)/v) w for balanced
  // stages (Narayanan et al. 2021, eq. 1 and 2).
  r.pipeline_seconds = (m - 1.0 / v) * work[busiest] + total_work / v;
  const double unshared = r.pipeline_seconds;
  // Devices sharing compute units (MPI ranks sharing CPU cores) each run at a
  // whole unit's rate while the others wait, but together they cannot be
  // busier than the node's units: the schedule simulated with the busy
  // stages sharing the units (shared_pipeline_seconds).
  const double share = static_cast<double>(std::min(c.devices(), hw.devices_per_node)) / hw.units();
  if (share > 1) {
    // The schedule simulated with the busy stages sharing the units
    // (shared_schedule_seconds: at most kSimulatedPeriods of its steady state).
    const std::string& schedule = p > 1 ? c.schedule : std::string("1f1b");
    const int64_t simulated = simulated_micro_batches(schedule, p, c.micro_batches);
    // Beyond about 1e5 (events x stages: a millisecond, for each of the
    // thousands of candidates a plan predicts), a bound: the pipeline's work
    // at the node's rate, and never faster than unshared. Ranks sharing cores
    // run small pipelines; those are simulated.
    if (static_cast<double>(simulated) * v * p * p > 1e5) {
      r.pipeline_seconds = std::max(r.pipeline_seconds, m * share * total_work / p);
    } else {
      // Each pass with the receipt of its input.
      std::vector<double> fwd(nc), bwd(nc);
      for (int k = 0; k < nc; ++k) {
        fwd[k] = tf[k] + (k > 0 ? xfer[k - 1] : 0.0);
        bwd[k] = tb[k] + (k + 1 < nc ? xfer[k] : 0.0);
      }
      r.pipeline_seconds = shared_schedule_seconds(schedule, p, c.micro_batches, v, fwd, bwd, p / share);
    }
  }
  r.compute_seconds = m * stage_comp[busiest];
  r.memory_bound_seconds = m * stage_mem[busiest];
  r.tp_seconds = m * stage_tp[busiest];
  r.pp_seconds = m * stage_pp[busiest];
  r.zero3_seconds = m * stage_z3[busiest];
  r.host_seconds = m * stage_host[busiest];
  // The schedule's own idling; what sharing the units adds on top is said
  // apart (a pp = 1 layout has no bubble, however many ranks share a core).
  r.bubble_fraction = 1.0 - m * work[busiest] / unshared;
  r.sharing_seconds = r.pipeline_seconds - unshared;
  r.ideal_bubble = (p - 1) / m / v;

  // Data-parallel gradient reduction, started bucket by bucket during each
  // stage's last backward: hidden behind `overlap` of that backward, never
  // less than the last bucket's own time. Stage s's last backward ends when
  // the backward wave has still to pass the stages before it.
  double comm_end = r.pipeline_seconds, optimizer = 0, dp_bytes = 0, tp_bytes = 0, pp_bytes = 0;
  double before = 0;  // backward and transfers of the stages before s in the last micro-batch
  std::vector<double> stage_params(p, 0.0), stage_max_layer(p, 0.0), stage_tied(p, 0.0), stage_tp_payload(p, 0.0),
      stage_sent(p, 0.0), stage_wide_unit(p, 0.0), stage_unit(p, 0.0), stage_block_params(p, 0.0);
  const auto n_layers = static_cast<int64_t>(model.layers.size());
  for (int k = 0; k < nc; ++k) {
    const int s = k % p;
    const StageProfile& st = chunks[k];
    stage_params[s] += st.params;
    stage_block_params[s] += st.blocks.params;
    // ZeRO-2/3's gradient windows hold the largest layer's gradients; this
    // trainer keeps the tied embedding's whole gradient for the step instead
    // (its first and last stage both write it), so the embedding's window
    // leaves it out and the stage holds it whole. ZeRO-3's parameter windows
    // hold gather units (every parameter a layer reads: the head's is the
    // tied embedding): one fits the widest unit, the other the widest unit
    // that reads no tied parameter. Per-unit gathering (zero_unit_params,
    // DeepSpeed's per-module hooks) bounds the window and gathers the
    // embedding like any other unit.
    double window = 0;
    for (int64_t i = st.first_layer; i < st.last_layer; ++i) {
      const double own = model.layers[static_cast<size_t>(i)].params;
      window = std::max(window, own - (i == 0 ? model.tied_params : 0.0));
      const bool head = model.tied_params > 0 && i > 0 && i + 1 == n_layers;  // reads wte (a copy: counted in st.params)
      const double unit = own + (head ? model.tied_params : 0.0);
      stage_wide_unit[s] = std::max(stage_wide_unit[s], unit);
      if (!(model.tied_params > 0 && (i == 0 || head))) stage_unit[s] = std::max(stage_unit[s], unit);
    }
    if (f.zero_unit_params > 0) {
      window = std::min(st.max_layer_params, f.zero_unit_params);
      stage_wide_unit[s] = stage_unit[s] = window;
    } else if (st.first_layer == 0 || st.holds_tied_copy) {
      stage_tied[s] = model.tied_params;
    }
    stage_max_layer[s] = std::max(stage_max_layer[s], window);
    stage_tp_payload[s] +=
        b * e *
        (st.tp_fwd_bytes + st.tp_bwd_bytes + (c.recompute == Recompute::full ? st.blocks.tp_fwd_bytes : 0.0) +
         (regather ? st.tp_regather_bytes : 0.0));
    stage_sent[s] += b * e * ((k + 1 < nc ? st.out_bytes : 0.0) + (k > 0 ? chunks[k - 1].out_bytes : 0.0)) /
                     (split ? t : 1);
  }
  for (int s = 0; s < p; ++s) {
    const double params = stage_params[s];
    const double grad_bytes = params * wire;
    double reduce = 0, last_bucket = 0;
    const bool local = w.local_sync_every > 0 && d > 1;
    if (d > 1 && !local) {
      const double bucket = std::min(grad_bytes, w.bucket_bytes);
      reduce = scatter ? all_gather_seconds(grad_bytes, d, dp_link) : all_reduce_seconds(grad_bytes, d, dp_link);
      last_bucket = scatter ? all_gather_seconds(bucket, d, dp_link) : all_reduce_seconds(bucket, d, dp_link);
      if (c.zero == 3) reduce = last_bucket;  // scattered during each backward (above)
    }
    const double last_backward = stage_tb[s] / v;  // one chunk's: the step's last
    const double end_of_backward = r.pipeline_seconds - before;
    const double hidden = dp_overlap ? hw.overlap * last_backward : 0.0;
    if (f.grad_sync_per_chunk && v > 1 && dp_overlap && reduce > 0 && c.zero != 3) {
      // Chunk j's last backward ends before the last group's backwards of
      // chunks j-1 .. 0 (min(p, m) each); its buckets start during it. The
      // chunks' reductions take the link in the order their backwards end.
      auto reduction = [&](double bytes) {
        return scatter ? all_gather_seconds(bytes, d, dp_link) : all_reduce_seconds(bytes, d, dp_link);
      };
      const double group = std::min(m, static_cast<double>(p));
      std::vector<double> ends(v);
      double after = 0;
      for (int j = 0; j < v; ++j) {
        ends[j] = end_of_backward - after;
        after += group * tb[j * p + s];
      }
      double link_free = 0, busy = 0;
      for (int j = v - 1; j >= 0; --j) {
        const int k = j * p + s;
        const double bytes = chunks[k].params * wire;
        const double start = std::max(link_free, ends[j] - hw.overlap * tb[k]);
        busy += reduction(bytes);
        link_free = std::max(start + reduction(bytes), ends[j] + reduction(std::min(bytes, w.bucket_bytes)));
      }
      // What ran before the backward's end took its share of that backward.
      const double after_end = std::max(0.0, link_free - end_of_backward);
      comm_end = std::max(comm_end, link_free + hw.comm_compute_share * std::max(0.0, busy - after_end));
    } else {
      const double exposed = std::max(last_bucket, reduce - hidden);
      comm_end = std::max(comm_end, end_of_backward + behind(reduce, reduce - exposed, hw.comm_compute_share));
    }
    before += last_backward + (s < nc - 1 ? xfer[s] : 0.0);

    // The update: per-parameter passes at memory bandwidth (zeroing and the
    // norm read every gradient; the optimizer touches its shard), then the
    // ZeRO-1/2 all-gather of the updated parameters (ZeRO-3 keeps its shard).
    const double owned = c.zero >= 1 && d > 1 ? std::ceil(params / d) : params;
    const double grads_held = c.zero >= 2 && d > 1 ? owned : params;
    double update = (owned * sb.update_traffic + 2 * grads_held * sb.grads) / hw.memory_bandwidth *
                    std::max(1.0, share);  // every device of the node updates at once
    // A wrapper's own gradient buckets: each gradient copied in (read, write)
    // and the reduced one copied back out.
    if (d > 1 && dp_overlap) update += 4 * params * f.ddp_bucket_copy_bytes / hw.memory_bandwidth * std::max(1.0, share);
    if (c.zero >= 1 && c.zero <= 2 && d > 1) {
      const double gather = all_gather_seconds(params * sb.params, d, dp_link);
      if (f.overlap_param_gather) {
        // Behind the next step's first forward of this stage's chunks.
        double first_forward = 0;
        for (int k = s; k < nc; k += p) first_forward += tf[k];
        const double first_bucket = all_gather_seconds(std::min(params * sb.params, w.bucket_bytes), d, dp_link);
        update += behind(gather, std::min(gather - first_bucket, hw.overlap * first_forward), hw.comm_compute_share);
      } else {
        update += gather;
      }
    }
    // Local sync, per step: 1/H of the period's exchange, an all-reduce of
    // the fp32 parameter changes after the step (nothing to hide it behind),
    // and of the outer step's passes over the fp32 copies (LocalSync::sync,
    // one pass per op: the change, its mean, the anchor's update, the
    // parameters and their compute copy set from it: 16 reads and writes of
    // 4 bytes per parameter, 28 with the Nesterov momentum's five passes).
    const double fp32 = 4.0;
    const double period = static_cast<double>(w.local_sync_every);
    if (local)
      update += (all_reduce_seconds(params * fp32, d, dp_link) +
                 params * fp32 * (w.outer_momentum ? 28 : 16) / hw.memory_bandwidth * std::max(1.0, share)) /
                period;
    optimizer = std::max(optimizer, update);

    double dp_sent = 0;
    if (d > 1) {
      const double frac = static_cast<double>(d - 1) / d;
      // ZeRO-2/3 scatter the tied embedding's gradient once per step, the
      // other layers' every micro-batch; ZeRO-3's head gathers the embedding
      // once more per micro-batch where one stage holds both (its backward
      // finds it still in the window).
      const double tied_grads = stage_tied[s] * wire;
      const double head_gather = p == 1 && model.tied_params > 0 ? model.tied_params * sb.params : 0.0;
      if (c.zero == 3)  // two gathers (and the blocks' again under full recomputation) and a scatter per micro-batch
        dp_sent = m * frac *
                      ((2 * params + (c.recompute == Recompute::full && f.zero3_regather_remade ? stage_block_params[s]
                                                                                              : 0.0)) *
                           sb.params +
                       head_gather + grad_bytes - tied_grads) +
                  frac * tied_grads;
      else if (c.zero == 2)
        dp_sent = m * frac * (grad_bytes - tied_grads) + frac * tied_grads + frac * params * sb.params;
      else if (c.zero == 1)
        dp_sent = (scatter ? 1.0 : 2.0) * frac * grad_bytes + frac * params * sb.params;
      else if (local)
        dp_sent = 2.0 * frac * params * fp32 / period;
      else
        dp_sent = 2.0 * frac * grad_bytes;
    }
    dp_bytes = std::max(dp_bytes, dp_sent);
    tp_bytes = std::max(tp_bytes, t > 1 ? m * 2.0 * (t - 1) / t * stage_tp_payload[s] : 0.0);
    pp_bytes = std::max(pp_bytes, m * stage_sent[s]);
  }
  r.dp_exposed_seconds = comm_end - r.pipeline_seconds;
  if (p > 1 && chunks.back().holds_tied_copy)
    r.embed_seconds = all_reduce_seconds(model.tied_params * wire, 2, pp_link);
  // The step's scalar agreements: the loss over dp and pp, the gradient norm
  // over tp and pp (latency only).
  const double scalars = all_reduce_seconds(8, d, dp_link) + all_reduce_seconds(8, p, pp_link) * 2 +
                         all_reduce_seconds(8, t, tp_link);
  r.optimizer_seconds = optimizer + scalars;
  r.step_seconds = r.pipeline_seconds + r.dp_exposed_seconds + r.embed_seconds + r.optimizer_seconds;

  // Memory of the fullest device. Per micro-batch copy a chunk keeps (bytes
  // per sample, as lib/train allocates them; apps/dtrain/profile.cpp checks
  // the same accounting against the allocator): every layer's activations and
  // one set of work buffers (the blocks share theirs); under selective
  // recomputation the remade part once instead of per block; under full
  // recomputation a block keeps only its input, and one block's activations
  // are remade at a time. A fused attention keeps no scores.
  // Per copy, and once per stage (the work buffers and what recomputation
  // remakes: below, how each runtime holds them).
  auto chunk_act = [&](const StageProfile& st) {
    const double scores = fused ? st.score_bytes : 0.0;
    const double act = st.act_bytes - scores;
    switch (c.recompute) {
      case Recompute::full:  // the blocks keep their inputs, on the device or the host
        return std::pair(act - (st.block_act_bytes - scores) + (f.host_checkpoints ? 0.0 : st.block_in_bytes),
                         st.max_layer_work_bytes + st.max_block_act_bytes - (fused ? st.max_block_score_bytes : 0.0));
      case Recompute::selective:
        return std::pair(act - (st.recompute_bytes - scores),
                         st.max_layer_work_bytes + st.max_layer_recompute_bytes -
                             (fused ? st.max_block_score_bytes : 0.0));
      default:
        return std::pair(act, st.max_layer_work_bytes);
    }
  };
  std::vector<int64_t> il_first, il_last;
  if (v > 1) {
    il_first = interleaved_in_flight(0, p, c.micro_batches, v);
    il_last = interleaved_in_flight(p - 1, p, c.micro_batches, v);
  }
  // Under a caching allocator memory is reused as soon as it is freed: the
  // stage's live copies at their most at once (interleaved_peak_bytes) and
  // one set of work buffers and remade activations, the largest chunk's,
  // since one pass runs at a time. lib/train allocates each chunk's copies
  // for the step (each chunk's most, summed) and one set of the blocks'
  // shared buffers for the stage; a copy keeps its own copy of what it hands
  // on out of that set where the stage has more than one copy: under full
  // recomputation the blocks' output it sends, and a chunk's input gradient
  // where it starts with a block. (Layers other than blocks keep their work
  // buffers per copy.)
  const bool caching = f.caching_allocator;
  const bool full = c.recompute == Recompute::full;
  auto handed_on = [&](const StageProfile& st) {
    const LayerProfile& first = model.layers[static_cast<size_t>(st.first_layer)];
    const LayerProfile& last = model.layers[static_cast<size_t>(st.last_layer - 1)];
    const bool sends = st.last_layer < n_layers;
    return (first.block && st.first_layer > 0 ? first.in_bytes : 0.0) +
           (full && last.block && sends ? st.out_bytes : 0.0);
  };
  // Per copy, what the layers' act_bytes (each counts its input, not its
  // output) and the blocks' shared set leave out: the work buffers of the
  // layers other than blocks (ln_f's and the head's input gradients: their
  // own); the embedding's buffers before a block (its output, which the
  // block counts as its input except under full recomputation, where it
  // keeps a copy; under sequence parallelism the whole sequence it scatters
  // from, t times its slice; with dropout its output before it); the output a
  // chunk sends (the next chunk counts it;
  // under full recomputation a block's is in the shared set, and handed on);
  // and under full recomputation the input a chunk starting with a block
  // receives (its blocks count their copies).
  auto own_buffers = [&](const StageProfile& st) {
    double bytes = 0;
    for (int64_t i = st.first_layer; i < st.last_layer; ++i) {
      const LayerProfile& l = model.layers[static_cast<size_t>(i)];
      if (l.block) continue;
      bytes += l.work_bytes;
      if (i + 1 < st.last_layer && model.layers[static_cast<size_t>(i + 1)].block)
        bytes += l.out_bytes *
                 ((model.sequence_parallel ? t + 1.0 : 1.0) + (model.dropout ? 1.0 : 0.0) - (full ? 0.0 : 1.0));
    }
    const LayerProfile& first = model.layers[static_cast<size_t>(st.first_layer)];
    const LayerProfile& last = model.layers[static_cast<size_t>(st.last_layer - 1)];
    if (st.last_layer < n_layers && !(full && last.block)) bytes += st.out_bytes;
    if (full && first.block && st.first_layer > 0) bytes += first.in_bytes;
    return bytes;
  };
  // Under full recomputation, a block's output that a later layer of the
  // chunk keeps (ln_f's input, counted in its act_bytes): in the shared set
  // where the stage holds one model, so counted once too many there.
  auto kept_from_shared = [&](const StageProfile& st) {
    double bytes = 0;
    for (int64_t i = st.first_layer; full && i + 1 < st.last_layer; ++i)
      if (model.layers[static_cast<size_t>(i)].block && !model.layers[static_cast<size_t>(i + 1)].block)
        bytes += model.layers[static_cast<size_t>(i)].out_bytes;
    return bytes;
  };
  std::vector<PipeOp> ops_first, ops_last;
  if (caching && v > 1) {
    ops_first = interleaved_ops(0, p, c.micro_batches, v);
    ops_last = interleaved_ops(p - 1, p, c.micro_batches, v);
  }
  for (int s = 0; s < p; ++s) {
    Memory mem;
    mem.stage = s;
    const double params = stage_params[s];
    const double shard = std::ceil(params / d);
    const bool sharded = d > 1;
    // ZeRO-3: the 1/d shard (the tied embedding's share too) plus the
    // gathered unit and the next one (prefetch): the two windows.
    const double param_windows = stage_wide_unit[s] + stage_unit[s];
    mem.params = c.zero == 3 && sharded ? (shard + param_windows) * sb.params : params * sb.params;
    // ZeRO-2/3: this rank's shard plus two windows of the largest layer's
    // gradients, and the tied embedding's whole gradient.
    const double windows = 2 * stage_max_layer[s] + stage_tied[s];
    mem.grads = c.zero >= 2 && sharded ? (shard + windows) * sb.grads : params * sb.grads;
    if (c.zero == 1 && sharded && f.zero1_grad_shard) mem.grads += shard * sb.grads;
    if (dp_overlap) mem.grads += params * f.ddp_bucket_copy_bytes;  // the wrapper's own buckets
    mem.optimizer = (c.zero >= 1 && sharded ? shard : params) * sb.optimizer;
    // (Also at dp 1, where the trainer keeps them all the same: an outer step
    // of one replica, which outer momentum makes a different optimizer.)
    if (w.local_sync_every > 0) mem.local_sync = params * 4.0 * (w.outer_momentum ? 4 : 3);
    double act = 0, widest_shared = 0, handed = 0, copies_in_all = 0, kept = 0, slots = 0;
    std::vector<double> copy_bytes(static_cast<size_t>(v));
    for (int ch = 0; ch < v; ++ch) {
      const int k = ch * p + s;
      const StageProfile& st = chunks[k];
      double copies;
      if (v > 1)
        copies = static_cast<double>((s == p - 1 ? il_last : il_first)[static_cast<size_t>(ch)]);
      else
        copies = static_cast<double>(in_flight_micro_batches(c.schedule, s, p, c.micro_batches));
      auto [per_copy, shared] = chunk_act(st);
      // Bytes per sample, and the work buffers' batch-independent scratch:
      // the shared set's widest, and each copy's own layers'.
      const double shared_set = (shared * b + st.max_block_work_fixed_bytes) * e + st.max_block_stat_fixed_bytes;
      slots = std::max(slots, st.shared_bytes * b * e);  // sequence parallelism's, one set for the stage
      if (f.keeps_sent_outputs && k + 1 < nc) per_copy += st.out_bytes;  // the output sent, kept to its backward
      copy_bytes[static_cast<size_t>(ch)] = per_copy * b * e;
      if (caching) {
        widest_shared = std::max(widest_shared, shared_set);
        continue;
      }
      act += copies * ((per_copy + own_buffers(st)) * b + st.own_work_fixed_bytes) * e;
      if (st.block_act_bytes > 0) {  // the blocks' one set, and what copies hand on out of it
        widest_shared = std::max(widest_shared, shared_set);
        handed += copies * handed_on(st) * b * e;
        kept += kept_from_shared(st) * b * e;
      }
      // The step loop's buffer for the gradient the chunk receives: one, whatever its copies.
      if (k + 1 < nc) act += st.out_bytes * b * e;
      copies_in_all += copies;
    }
    if (caching) {
      // Middle stages are bounded by the first's schedule, as the counts above.
      act = (v > 1 ? peak_bytes(s == p - 1 ? ops_last : ops_first, copy_bytes)
                   : copy_bytes[0] * static_cast<double>(in_flight_micro_batches(c.schedule, s, p, c.micro_batches))) +
            widest_shared;
    } else {
      act += widest_shared + (copies_in_all > 1 ? handed : -kept);
    }
    mem.activations = act + slots;
    if (w.precision == "bf16") mem.update_copy = f.update_grad_copy_bytes * (c.zero >= 1 && sharded ? shard : params);
    if (s == 0 || mem.total() > r.memory.total()) r.memory = mem;
  }
  r.capacity = hw.memory_bytes * hw.usable_memory_fraction;

  const double items = static_cast<double>(w.global_batch) * static_cast<double>(model.items_per_sample);
  r.tokens_per_second = items / r.step_seconds;
  r.mfu = static_cast<double>(w.global_batch) * model.model_flops_per_sample /
          (r.step_seconds * c.devices() * peak);
  r.tp_bytes = tp_bytes;
  r.pp_bytes = pp_bytes;
  r.dp_bytes = dp_bytes;
  return r;
}

}  // namespace dtrain
