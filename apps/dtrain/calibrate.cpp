#include "calibrate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "core/device.h"
#include "kernels/cpu/gemm.h"
#include "ops/runtime.h"
#include "parallel/auto_layout.h"
#include "parallel/layout.h"
#include "parallel/model_profile.h"
#include "train/profiler.h"
#include "train/trainer.h"

namespace dtrain {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double fastest(const std::vector<double>& v) { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); }

// How time_one_process sums up its steps: alone, the fastest step (other work
// on the machine only ever adds time, and one descheduled step of a small
// model can take 20 times its due); with every rank running at once, the
// median (the sharing of the cores is the thing measured).
enum class Pick { fastest, median };

// The config's layout (dp, tp, pp 1) at micro-batch b, `accum` of them a
// step, with no ZeRO or recomputation (the fits count the layers' own FLOPs),
// sequence parallel or not; no checkpoints.
Config layout_config(const Config& cfg, int dp, int tp, int64_t b, int64_t accum = 1, bool sp = false) {
  Config c = cfg;
  c.parallel.mode = "manual";
  c.parallel.dp = dp;
  c.parallel.tp = tp;
  c.parallel.pp = 1;
  c.parallel.zero = 0;
  c.parallel.sequence_parallel = sp;
  c.train.recompute = "none";
  c.train.micro_batch = b;
  c.train.grad_accum = accum;
  c.train.global_batch = b * accum * dp;
  c.checkpoint.every = 0;
  c.checkpoint.every_minutes = 0;
  c.checkpoint.at_end = false;
  return c;
}

// A micro-batch of `b` on one process, `accum` of them a step: over its steps,
// the time per micro-batch in its forward, backward (the loss included) and
// data fill, and per step the rest (optimizer update, gradient norm and
// zeroing). Small micro-batches are timed as training runs them, accumulated
// into one step: one micro-batch of 1 a step leaves the caches warm for the
// next step's and hides the per-micro-batch cost (a small GPT at n_embd 256:
// 16 single steps of 1 took 525 ms against 531 for one of 16, while 16
// accumulated micro-batches of 1 took 648 ms).
struct StepSplit {
  double pass = 0, update = 0;
  double median_pass = 0;  // beside a median taken with every rank at once
};

StepSplit time_one_process(const Config& cfg, int64_t b, int64_t accum, const CalibrateOptions& o, Pick pick) {
  const Config one = layout_config(cfg, 1, 1, b, accum);
  SelfGroups self;
  Profiler prof(false);
  TrainerOptions options;
  options.profiler = &prof;  // on a GPU it times the passes with events on the stream
  options.local_rank = o.local_rank;
  options.cores = o.threads_default;
  Trainer trainer(one, self.groups(), [](const std::string&) {}, options);
  std::vector<double> pass, update;
  for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
    prof.reset();
    const double step = trainer.train_step(s).seconds;
    if (s < o.warmup) continue;
    using K = Profiler::Kind;
    const double p = prof.seconds(K::forward) + prof.seconds(K::backward) + prof.seconds(K::data);
    pass.push_back(p / static_cast<double>(accum));
    update.push_back(step - p);  // the update, gradient norm and zeroing: the cost model's per-parameter passes
  }
  if (pick == Pick::fastest) return {fastest(pass), fastest(update), median(pass)};
  return {median(pass), median(update), median(pass)};
}

// What a GPU does by itself, measured through the ops layer (the products and
// copies training runs) on the device the config trains on.
struct DeviceProbe {
  std::string describe;        // the runtime's "cuda:0 (NVIDIA H200, sm_90, 139.8 GiB)"
  std::string gpu_name;        // for the preset of its datasheet peaks
  double memory_bytes = 0;     // the device's
  double gemm_large = 0, gemm_small = 0;  // FLOP/s of n^3 products in the compute dtype, sustained
  double gemm_fp32 = 0;        // FLOP/s of an fp32 product (no tensor cores unless train.tf32)
  double copy_bandwidth = 0;   // B/s of a device-to-device copy, read + write
};

// Rounds of the tp-inside-a-step measurement (dp, tp, sequence parallel, in turn).
constexpr int kTpRounds = 3;

// 2048^3 (about 25 us at the H200's measured 0.7 of peak) is well clear of a
// launch's host time (a few us per cuBLASLt call; not measured here: Python's
// dispatch in tools/gpu/gemm_sweep.py took 11 us); 512^3 (0.4 us) would
// measure the host. Too close to 8192 for the curve's half point, which
// comes from the roofline as in the presets; its rate is recorded beside it.
constexpr int64_t kGpuGemmLarge = 8192, kGpuGemmSmall = 2048, kGpuGemmFp32 = 4096;
constexpr double kGpuCopyBytes = 1024.0 * 1024 * 1024;

DeviceProbe probe_device(const Config& cfg, int local_rank) {
  const auto rt = ops::Runtime::open(cfg.train.device, local_rank, cfg.train.tf32);
  DeviceProbe p;
  p.describe = rt->describe();
  const gpu::DeviceInfo info = gpu::device_info(rt->exec().device.index);
  p.gpu_name = info.name;
  p.memory_bytes = static_cast<double>(info.total_bytes);
  const DType dt = cfg.train.precision == "bf16" ? DType::bf16 : DType::f32;
  p.gemm_large = measure_gemm_rate(*rt, dt, kGpuGemmLarge, 2.0, 2.0);
  p.gemm_small = measure_gemm_rate(*rt, dt, kGpuGemmSmall, 0.2, 0.5);
  p.gemm_fp32 = dt == DType::f32 ? p.gemm_large : measure_gemm_rate(*rt, DType::f32, kGpuGemmFp32, 0.5, 1.0);
  p.copy_bandwidth = measure_copy_bandwidth(*rt, kGpuCopyBytes);
  return p;
}

// Every rank gets rank 0's value.
constexpr double kNoDeadline = 1e9;  // s: about 30 years

double from_rank0(Communicator& world, double x) {
  Tensor t = Tensor::zeros(Shape{1}, DType::f64);
  if (world.rank() == 0) t.data<double>()[0] = x;
  world.broadcast(t, 0)->wait();
  return t.data<double>()[0];
}

double max_over_ranks(Communicator& world, double x) {
  Tensor t = Tensor::zeros(Shape{1}, DType::f64);
  t.data<double>()[0] = x;
  world.all_reduce(t, ReduceOp::max)->wait();
  return t.data<double>()[0];
}

double sum_over_ranks(Communicator& world, double x) {
  Tensor t = Tensor::zeros(Shape{1}, DType::f64);
  t.data<double>()[0] = x;
  world.all_reduce(t, ReduceOp::sum)->wait();
  return t.data<double>()[0];
}

// Seconds per all-reduce of `bytes` among the world (the median of rounds of `reps`).
// On a GPU, `comm` is the device world (NCCL) and `host` the MPI one that
// synchronises the rounds; on the CPU both are the same.
double all_reduce_time(Communicator& comm, Communicator& host, double bytes, int reps, Device device = Device::cpu()) {
  const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(bytes / 4));
  Tensor t = Tensor::zeros(Shape{n}, DType::f32, device);
  for (int i = 0; i < 3; ++i) comm.all_reduce(t, ReduceOp::sum)->wait();
  if (!device.is_cpu()) gpu::device_sync();
  std::vector<double> rounds;
  for (int r = 0; r < 5; ++r) {
    host.barrier()->wait();
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) comm.all_reduce(t, ReduceOp::sum)->wait();
    if (!device.is_cpu()) gpu::device_sync();  // NCCL's wait() orders the stream, it does not block
    rounds.push_back(max_over_ranks(host, since(t0) / reps));
  }
  return median(rounds);
}

// Seconds per hop of a 4-byte message handed round the ranks (0 -> 1 -> ...
// -> n-1 -> 0): each receiver has been waiting since its previous hand-over.
double handoff_time(Communicator& world, int laps) {
  const int n = world.size(), me = world.rank();
  Tensor t = Tensor::zeros(Shape{1}, DType::f32);
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  std::vector<double> rounds;
  for (int r = 0; r < 5; ++r) {
    world.barrier()->wait();
    const auto t0 = Clock::now();
    for (int i = 0; i < laps; ++i) {
      if (me == 0) {
        world.send(t, next, 7)->wait();
        world.recv(t, prev, 7)->wait();
      } else {
        world.recv(t, prev, 7)->wait();
        world.send(t, next, 7)->wait();
      }
    }
    rounds.push_back(from_rank0(world, since(t0) / (static_cast<double>(laps) * n)));
  }
  return median(rounds);
}

// The step of `c`'s layout on every rank: over its measured steps the median
// of the slowest rank's (a step is as slow as its slowest rank).
double time_layout(const Config& c, Communicator& world, const CalibrateOptions& o) {
  TrainerOptions options;
  options.local_rank = o.local_rank;
  options.cores = o.threads_default;
  Trainer trainer(c, o.groups_for(c), [](const std::string&) {}, options);
  std::vector<double> steps;
  for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
    const double t = max_over_ranks(world, trainer.train_step(s).seconds);
    if (s >= o.warmup) steps.push_back(t);
  }
  return median(steps);
}

// The cost model's step for `c`'s layout on `n` devices of `h`.
double predicted_step(const Config& c, int n, const Hardware& h) {
  PlanRequest r = plan_request(c, n, h);
  r.features = r.runnable = Features::this_trainer();
  r.dp = static_cast<int>(c.parallel.dp);
  r.tp = static_cast<int>(c.parallel.tp);
  r.pp = 1;
  r.micro_batch = c.train.micro_batch;
  r.micro_batches = 1;
  r.zero = 0;
  r.recompute = 0;
  r.sequence_parallel = c.parallel.sequence_parallel ? 1 : 0;
  r.max_idle_fraction = 0;
  const Plan plan = make_plan(r);
  if (plan.feasible.empty())
    throw RuntimeError(fmt::format("calibration: the cost model finds no fit for {} on {} devices: {}",
                                   describe(Candidate{.dp = r.dp, .tp = r.tp, .pp = 1}), n, nothing_fits(plan)));
  return plan.feasible.front().p.step_seconds;
}

// The largest tp degree t > 1 dividing n that the GPT splits into (heads,
// width, the MLP's width and vocabulary divisible by it) and whose sequence it splits (for the
// sequence-parallel step); 0 for none (a CNN: no tp).
int tp_degree(const Config& cfg, int n) {
  if (cfg.model.family() != ModelFamily::gpt) return 0;
  for (int t = n; t > 1; --t)
    if (n % t == 0 && cfg.model.n_head % t == 0 && cfg.model.kv_heads() % t == 0 &&
        cfg.model.n_embd % t == 0 && cfg.model.vocab_size % t == 0 &&
        cfg.model.ffn_width() % t == 0 &&
        train_seq_len(cfg) % t == 0)
      return t;
  return 0;
}

std::string toml_string(const std::string& text) {
  std::string out = "\"";
  for (char ch : text) out += ch == '"' || ch == '\\' ? std::string("\\") + ch : std::string(1, ch);
  return out + "\"";
}

std::string num(double x) { return fmt::format("{:.6g}", x); }

}  // namespace

Calibration calibrate_hardware(const Config& cfg, Communicator& world, const CalibrateOptions& o) {
  const int n = world.size(), me = world.rank();
  const int node = o.ranks_per_node > 0 ? o.ranks_per_node : n;
  const int64_t seq_len = train_seq_len(cfg);
  const ModelProfile model = profile_model(cfg.model, seq_len, 1);
  double flops = 0, params = 0, mem_bytes = 0;  // mem_bytes: the memory-bound passes per sample (scores kept)
  std::vector<Gemm> gemms;
  for (const LayerProfile& l : model.layers) {
    flops += l.fwd_flops + l.bwd_flops;
    params += l.params;
    mem_bytes += l.mem_fwd + l.mem_bwd + l.score_mem_fwd + l.score_mem_bwd;
    gemms.insert(gemms.end(), l.gemms.begin(), l.gemms.end());
  }
  const auto layers = static_cast<int64_t>(model.layers.size());
  const int64_t b1 = o.small_batch, b2 = o.large_batch > 0 ? o.large_batch : std::max<int64_t>(8, cfg.train.micro_batch);
  const int64_t b1_accum = std::max<int64_t>(1, b2 / b1);  // b1 accumulated to about b2's step

  // 1. Rank 0 alone; the others wait in a barrier as idle pipeline stages wait.
  // Threads as the trainer will set them (train.threads), for the sgemm too.
  // On a GPU: the device's products, copies and memory first (probe_device),
  // then the model's passes on it, timed by events on its stream.
  const bool gpu = cfg.train.device != "cpu";
  cpu::set_num_threads(static_cast<int>(cfg.train.threads), o.threads_default);
  double peak = 0, small_gemm = 0;  // small_gemm: the small_n product (the CPU's efficiency curve)
  // On the CPU, bf16 products as well (AMX, AVX512-BF16, or converted for the
  // sgemm where the CPU has neither): the peak of the precision the config
  // does not train in is the one it does times the ratio of the two products.
  double bgemm = 0, small_bgemm = 0;
  const int64_t small_n = gpu ? kGpuGemmSmall : 128, large_n = gpu ? kGpuGemmLarge : 1024;
  std::unique_ptr<ops::Runtime> cpu_rt;
  auto measure_cpu_bf16 = [&](int64_t n) {
    if (!cpu_rt) cpu_rt = ops::Runtime::open("cpu", 0, false);
    return measure_gemm_rate(*cpu_rt, DType::bf16, n, 0.02, n >= 512 ? 0.2 : 0.05);
  };
  StepSplit small, large;
  DeviceProbe probe;
  if (me == 0) {
    if (gpu) {
      probe = probe_device(cfg, o.local_rank);
      peak = probe.gemm_large;
      small_gemm = probe.gemm_small;
    } else {
      peak = measure_sgemm_gflops(static_cast<int>(large_n)) * 1e9;
      small_gemm = measure_sgemm_gflops(static_cast<int>(small_n), 64) * 1e9;
      bgemm = measure_cpu_bf16(large_n);
      small_bgemm = measure_cpu_bf16(small_n);
    }
    small = time_one_process(cfg, b1, b1_accum, o, Pick::fastest);
    large = time_one_process(cfg, b2, 1, o, Pick::fastest);
    if (!gpu) {  // the best of two: other jobs come and go
      peak = std::max(peak, measure_sgemm_gflops(static_cast<int>(large_n)) * 1e9);
      small_gemm = std::max(small_gemm, measure_sgemm_gflops(static_cast<int>(small_n), 64) * 1e9);
      bgemm = std::max(bgemm, measure_cpu_bf16(large_n));
      small_bgemm = std::max(small_bgemm, measure_cpu_bf16(small_n));
    }
  }
  // The solo phase takes as long as the model makes it (minutes for a large
  // one), longer than any collective deadline: the others wait for it without
  // one. Should rank 0 fail instead, its error aborts the job (apps/dtrain).
  world.set_timeout(kNoDeadline);
  world.barrier()->wait();
  world.set_timeout(o.timeout_seconds);
  peak = from_rank0(world, peak);
  small_gemm = from_rank0(world, small_gemm);
  bgemm = from_rank0(world, bgemm);
  small_bgemm = from_rank0(world, small_bgemm);
  small.pass = from_rank0(world, small.pass);
  large.pass = from_rank0(world, large.pass);
  large.median_pass = from_rank0(world, large.median_pass);
  const double update = from_rank0(world, std::min(small.update, large.update));  // it does not depend on b
  probe.memory_bytes = from_rank0(world, probe.memory_bytes);
  probe.copy_bandwidth = from_rank0(world, probe.copy_bandwidth);
  probe.gemm_fp32 = from_rank0(world, probe.gemm_fp32);
  Workload w;
  w.optimizer = cfg.optim.name;
  w.momentum = cfg.optim.momentum > 0;
  // A GPU's update of a small model is launch-bound, not a bandwidth: its
  // memory-bound passes are costed at a large copy's rate.
  const double bandwidth = gpu ? probe.copy_bandwidth : fit_memory_bandwidth(params, update, w);
  // The products' efficiency and the fixed time per layer pass, through the
  // two micro-batches at the products' curve (the sgemm's, fitted through two
  // sizes), with the memory-bound passes (norms, softmax, GELU, residuals,
  // loss) taken off at that bandwidth, as the model adds them back. (A GPU's
  // curve comes from the roofline below: its two sizes are too close; its
  // efficiency from the sustained probe, its fixed time at that curve.)
  // On the CPU in bf16: the bf16 products' curve, and the memory-bound
  // passes over bf16 activations (half the layers' 4-byte count).
  const bool cpu_bf16 = !gpu && cfg.train.precision == "bf16";
  const double fit_peak = cpu_bf16 ? bgemm : peak, fit_small = cpu_bf16 ? small_bgemm : small_gemm;
  Hardware curve;
  curve.peak_fp32 = fit_peak;
  curve.gemm_half_dim =
      gpu ? 0.0
          : fit_gemm_half_dim(static_cast<double>(small_n), fit_small, static_cast<double>(large_n), fit_peak);
  const double memory_per_sample = mem_bytes / bandwidth;
  const ComputeFit fit = fit_compute(gemms, curve, "fp32", layers, static_cast<double>(b1), small.pass,
                                     static_cast<double>(b2), large.pass,
                                     memory_per_sample * (cpu_bf16 ? 0.5 : 1.0));

  // 2. Every rank at once: the node's ranks share how many compute units?
  // The mean over the ranks, the better of two tries: where ranks outnumber
  // cores, the scheduler's first placement of them is sometimes uneven.
  double together = large.median_pass;
  if (n > 1) {
    together = 0;
    for (int attempt = 0; attempt < 2; ++attempt) {
      world.barrier()->wait();
      const double mean = sum_over_ranks(world, time_one_process(cfg, b2, 1, o, Pick::median).pass) / n;
      together = attempt == 0 ? mean : std::min(together, mean);
    }
  }
  const int units = fit_compute_units(node, large.median_pass, together);

  // 3. Links among all ranks.
  Link link{0, 0};
  double handoff = 0, ar_small = 0, ar_big = 0;
  constexpr double kSmall = 8;
  // On GPUs a larger message: 4 MiB would not leave NVLink's latency behind.
  const double big = gpu ? 256.0 * 1024 * 1024 : 4.0 * 1024 * 1024;
  if (n > 1) {
    // On GPUs over the device groups training uses (NCCL).
    Groups dg;
    if (gpu) dg = o.groups_for(layout_config(cfg, n, 1, b2));
    Communicator& links = gpu ? *dg.world : world;
    const Device dev = gpu ? Device::cuda(o.local_rank % std::max(1, gpu::device_count(nullptr))) : Device::cpu();
    ar_small = all_reduce_time(links, world, kSmall, 200, dev);
    ar_big = all_reduce_time(links, world, big, gpu ? 20 : 10, dev);
    link = fit_link(n, kSmall, ar_small, big, ar_big);
    // MPI's hand-over to a waiting rank; a GPU's stages hand over through NCCL,
    // whose latency the link's already is (the presets' handoff_us = 0).
    if (!gpu) handoff = std::max(0.0, handoff_time(world, 200) - link.latency);
  } else {
    link = {bandwidth / 2, 1e-6};  // nothing to measure on one rank: a memory copy
  }

  Calibration c;
  Hardware& h = c.hardware;
  h.name = o.name;
  h.description = fmt::format(
      "measured by dtrain profile --write-hardware on {} rank{} ({} per node{}) with {}: the layers at {:.1f} "
      "GFLOP/s per rank alone, {} rank{} per compute unit{}",
      n, n > 1 ? "s" : "", node, o.cores > 0 ? fmt::format(", {} cores", o.cores) : "", o.config_path,
      fit.rate / 1e9, static_cast<double>(node) / units == 1 ? "1" : fmt::format("{:.3g}", static_cast<double>(node) / units),
      node == units ? "" : "s", n > 1 ? "" : "; links not measured (one rank)");
  h.memory_bytes = o.node_memory_bytes > 0 ? o.node_memory_bytes / node : 1024.0 * 1024 * 1024;
  h.usable_memory_fraction = 0.8;
  // Where the layers' products ran faster than the sgemm's curve allows (an
  // efficiency above 1: one n = 1024 sgemm is not every shape's best), the
  // peak is what they reached, not a cap that would slow every prediction.
  h.peak_fp32 = peak * std::max(1.0, fit.efficiency);
  h.peak_bf16 = bgemm * std::max(1.0, fit.efficiency);  // 0 on a GPU: set below
  h.gemm_half_dim = curve.gemm_half_dim;
  h.efficiency = std::min(1.0, fit.efficiency);
  h.fused_attention = false;  // the CPU backend keeps the attention scores
  h.memory_bandwidth = bandwidth;
  h.layer_overhead = fit.overhead;
  h.devices_per_node = node;
  h.compute_units = units < node ? units : 0;
  h.intra = link;
  // One node measured: the same. Over several nodes the world's ring, with
  // `node` ranks in each, crosses each node once and so ran over all of the
  // node's ports: `inter` is per device (Hardware::group_link gives a group
  // with k ranks per node k of it).
  h.inter = n > node ? Link{link.bandwidth / std::gcd(node, n), link.latency} : link;
  h.handoff_latency = handoff;
  // Where ranks share cores, communication competes with compute for them:
  // half the backward, as measured for the dp reduction on this machine's kind.
  h.overlap = units < node ? 0.5 : 1.0;
  if (gpu) {
    // The datasheet peaks of the GPU's preset (measured ones where it has
    // none), so that the efficiency is the measured large product's share of
    // them as in the presets; the memory the device reports; this trainer's
    // CUDA kernels (attention keeps its probabilities). Links: as measured,
    // or on one GPU the preset's (nothing to measure).
    const std::string preset_name = hardware_preset_for_gpu(probe.gpu_name);
    const bool has_preset = !preset_name.empty();
    const Hardware preset = has_preset ? load_hardware(preset_name) : Hardware{};
    // fp32 products with train.tf32 run on the tensor cores at TF32's rate:
    // their peak is half the bf16 one, not the datasheet's plain fp32.
    const bool bf16 = cfg.train.precision == "bf16", tf32 = !bf16 && cfg.train.tf32;
    h.memory_bytes = probe.memory_bytes;
    h.usable_memory_fraction = 0.9;
    h.peak_bf16 = has_preset ? preset.peak_bf16 : bf16 ? peak : 0;
    h.peak_fp32 = has_preset ? (tf32 ? preset.peak_bf16 / 2 : preset.peak_fp32) : bf16 ? probe.gemm_fp32 : peak;
    const double peak_here = bf16 ? h.peak_bf16 : h.peak_fp32;
    h.efficiency = std::min(1.0, peak / peak_here);
    // The roofline's half point for this precision's operands (4 bytes: twice
    // the FLOPs per byte to reach the same share of peak).
    h.gemm_half_dim = (bf16 ? 1.0 : 2.0) * h.efficiency * peak_here / bandwidth;
    // The fixed time per layer pass: what the small micro-batch took beyond
    // its products at that curve and its memory-bound passes (launches).
    // (The model moves bf16 activations: half the layers' 4-byte count.)
    const std::string precision = bf16 ? "bf16" : "fp32";
    h.layer_overhead = std::max(0.0, small.pass - static_cast<double>(b1) * memory_per_sample * (bf16 ? 0.5 : 1.0) -
                                         curve_gemm_seconds(gemms, static_cast<double>(b1), h, precision) /
                                             h.efficiency) /
                       (2.0 * static_cast<double>(layers));
    h.kernels = Kernels::dtrain_cuda;
    h.overlap = has_preset ? preset.overlap : 0.9;
    h.comm_compute_share = has_preset ? preset.comm_compute_share : 0.0;  // not measured: one GPU has no peer
    // Links: one node measured gives both; over several nodes the world's ring
    // is the inter-node link's, and NVLink's is the preset's (none: the
    // measured one for both, the slower).
    if (has_preset && n == 1) h.intra = preset.intra, h.inter = preset.inter;
    if (has_preset && n > node) h.intra = preset.intra;
    h.description = fmt::format(
        "measured by dtrain profile --write-hardware on {} rank{} ({} per node) with {}: {}; {} products of {}^3 "
        "at {:.0f} TFLOP/s sustained ({:.2f} of {}), device copies at {:.0f} GB/s{}",
        n, n > 1 ? "s" : "", node, o.config_path, probe.describe, bf16 ? "bf16" : tf32 ? "TF32" : "fp32", large_n,
        peak / 1e12,
        h.efficiency, has_preset ? "the " + preset_name + " preset's datasheet peak" : "the measured peak",
        bandwidth / 1e9, n > 1 ? "" : has_preset ? "; links from the preset (one rank)" : "; links not measured (one rank)");
  }

  // 4. Where ranks share cores: the tp all-reduces inside a step. A step of
  // every rank in tp groups of t (micro-batch b2 x t, so that each rank
  // computes about a micro-batch of b2) beside one of every rank data-parallel
  // (micro-batch b2): the same batch. The all-reduces of activations there
  // compete with the ranks' compute for the cores and caches; the bandwidth
  // the model's tp term gets is the one that makes its ratio of the two steps
  // the measured one (the ratio, so that the compute's own error, common to
  // both, cancels). On one rank, or ranks with a unit each, the link's.
  // The same again with sequence parallelism, whose reduce-scatters and
  // all-gathers are other implementations than the all-reduce's (Open MPI's
  // non-blocking reduce-scatter took 2.5x the all-gather of the same bytes
  // here): Hardware::sp_bandwidth.
  // (Not on GPUs: it measures ranks sharing CPU cores.)
  const int t = !gpu && units < node && n == node && o.groups_for ? tp_degree(cfg, n) : 0;
  double dp_step = 0, tp_step = 0, sp_step = 0, dp_pred = 0, tp_pred_link = 0, sp_pred_link = 0;
  if (t > 1) {
    const Config dp_cfg = layout_config(cfg, n, 1, b2), tp_cfg = layout_config(cfg, n / t, t, b2 * t),
                 sp_cfg = layout_config(cfg, n / t, t, b2 * t, 1, /*sp=*/true);
    // In alternating rounds, the ratios to the same round's dp step: on a
    // machine whose ranks share cores, how the scheduler places them, and so
    // every step's time, drifts by 1.1-1.3x between runs (tools/bench/
    // plan_results.md), while the tp/dp ratio is what the fit needs. One
    // round of each had read tp 4 at 1.12x dp 4 where 25 minutes of rounds
    // after it measured 1.24x.
    std::vector<double> dps, tp_ratios, sp_ratios;
    for (int round = 0; round < kTpRounds; ++round) {
      world.barrier()->wait();
      const double d = time_layout(dp_cfg, world, o);
      dps.push_back(d);
      tp_ratios.push_back(time_layout(tp_cfg, world, o) / d);
      sp_ratios.push_back(time_layout(sp_cfg, world, o) / d);
    }
    dp_step = median(dps);
    tp_step = dp_step * median(tp_ratios);
    sp_step = dp_step * median(sp_ratios);
    dp_pred = predicted_step(dp_cfg, n, h);
    tp_pred_link = predicted_step(tp_cfg, n, h);
    sp_pred_link = predicted_step(sp_cfg, n, h);
    // The bandwidth `field` at which the model predicts `step` for `c`, by
    // bisection over its log between 1/100 and 100 times the link's (the
    // predicted step falls as it rises).
    auto fit = [&](const Config& c, double step, double Hardware::*field) {
      const double target = step * dp_pred / dp_step;
      double lo = std::log(link.bandwidth / 100), hi = std::log(link.bandwidth * 100);
      Hardware trial = h;
      for (int i = 0; i < 60; ++i) {
        const double mid = 0.5 * (lo + hi);
        trial.*field = std::exp(mid);
        (predicted_step(c, n, trial) > target ? lo : hi) = mid;
      }
      return std::exp(0.5 * (lo + hi));
    };
    h.tp_bandwidth = fit(tp_cfg, tp_step, &Hardware::tp_bandwidth);
    h.sp_bandwidth = fit(sp_cfg, sp_step, &Hardware::sp_bandwidth);
  }

  c.table = {
      {"command", toml_string(shortened(o.command.empty() ? "dtrain profile " + o.config_path + " --write-hardware"
                                                          : o.command))},
      {"ranks", std::to_string(n)},
      {"ranks_per_node", std::to_string(node)},
      {"cores", std::to_string(o.cores)},
      {"flops_per_sample", num(flops)},
      {"layers", std::to_string(layers)},
      {"params", num(params)},
      {"sgemm_gflops", num(peak / 1e9)},
      {"sgemm_128_gflops", num(small_gemm / 1e9)},
      {"bgemm_gflops", num(bgemm / 1e9)},
      {"bgemm_128_gflops", num(small_bgemm / 1e9)},
      {"fitted_precision", toml_string(cfg.train.precision)},
      {"memory_bound_bytes_per_sample", num(mem_bytes)},
      {"sgemm_backend", toml_string(gpu ? "cuBLASLt" : cpu::gemm_backend_name())},
      {"device", toml_string(gpu ? probe.describe : "cpu")},
      {"gemm_sizes", fmt::format("[{}, {}]", small_n, large_n)},
      {"device_copy_gbs", num(gpu ? probe.copy_bandwidth / 1e9 : 0.0)},
      {"device_fp32_tflops", num(gpu ? probe.gemm_fp32 / 1e12 : 0.0)},
      {"threads_per_rank", std::to_string(cpu::num_threads())},
      {"micro_batches", fmt::format("[{}, {}]", b1, b2)},
      {"micro_batches_per_step", fmt::format("[{}, 1]", b1_accum)},  // pass_seconds_alone: per micro-batch
      {"pass_seconds_alone", fmt::format("[{}, {}]", num(small.pass), num(large.pass))},
      {"pass_seconds_together", num(together)},
      {"update_seconds", num(update)},
      {"all_reduce_seconds", fmt::format("[{}, {}]", num(ar_small), num(ar_big))},
      {"all_reduce_bytes", fmt::format("[{}, {}]", num(kSmall), num(big))},
      {"handoff_hop_seconds", num(handoff + link.latency)},
  };
  if (t > 1) {
    c.table.push_back({"tp_layouts", fmt::format("[\"dp={} micro-batch {}\", \"dp={} tp={} micro-batch {}\", "
                                                 "\"dp={} tp={} micro-batch {} sequence parallel\"]",
                                                 n, b2, n / t, t, b2 * t, n / t, t, b2 * t)});
    c.table.push_back({"tp_layout_step_seconds", fmt::format("[{}, {}, {}]", num(dp_step), num(tp_step), num(sp_step))});
    c.table.push_back({"tp_layout_rounds", std::to_string(kTpRounds)});
    c.table.push_back({"tp_layout_predicted_at_link",
                       fmt::format("[{}, {}, {}]", num(dp_pred), num(tp_pred_link), num(sp_pred_link))});
  }
  if (gpu) {
    c.summary = fmt::format(
        "calibrated on {} rank{}: {}; products of {}^3 at {:.1f} TFLOP/s sustained (efficiency {:.2f}), {}^3 at "
        "{:.1f}; device copies {:.0f} GB/s; {:.1f} us per layer pass (micro-batch {}: {:.4f} s, {}: {:.4f} s); "
        "{}",
        n, n > 1 ? "s" : "", probe.describe, large_n, peak / 1e12, h.efficiency, small_n, small_gemm / 1e12,
        bandwidth / 1e9, h.layer_overhead * 1e6, b1, small.pass, b2, large.pass,
        n > 1 ? fmt::format("NCCL all-reduce {:.1f} us per step, {:.1f} GB/s", link.latency * 1e6, link.bandwidth / 1e9)
              : std::string("links from the preset (one rank)"));
    return c;
  }
  c.summary = fmt::format(
      "calibrated on {} rank{}: sgemm ({}) {:.1f} GFLOP/s, bf16 products {:.1f} GFLOP/s; layers in {} {:.1f} GFLOP/s "
      "(efficiency {:.2f}), {:.1f} us per layer "
      "pass (micro-batch {}: {:.4f} s, {}: {:.4f} s alone; its median {:.4f} s alone, {:.4f} s with every rank at "
      "once -> {}); update {:.2f} ms for {:.3g} parameters ({:.2f} GB/s); {}; "
      "hand-over {:.1f} us more than a step{}",
      n, n > 1 ? "s" : "", cpu::gemm_backend_name(), peak / 1e9, bgemm / 1e9, cfg.train.precision, fit.rate / 1e9,
      h.efficiency, fit.overhead * 1e6, b1, small.pass, b2, large.pass, large.median_pass, together,
      units < node ? fmt::format("{} compute units for {} ranks", units, node)
                   : fmt::format("a compute unit per rank for {} ranks (compute_units = 0)", node),
      update * 1e3, params, bandwidth / 1e9,
      n > 1 ? fmt::format("all-reduce {:.1f} us per step, {:.2f} GB/s", link.latency * 1e6, link.bandwidth / 1e9)
            : fmt::format("links not measured (one rank): the file assumes a memory copy's, {:.2f} GB/s",
                          link.bandwidth / 1e9),
      handoff * 1e6,
      t > 1 ? fmt::format("; tp {} inside a step: {:.4f} s ({:.4f} s sequence parallel) against {:.4f} s "
                          "data-parallel (predicted at the link's bandwidth {:.4f} s, {:.4f} s and {:.4f} s) -> tp "
                          "all-reduces at {:.2f} GB/s, sequence parallel's at {:.2f} GB/s",
                          t, tp_step, sp_step, dp_step, tp_pred_link, sp_pred_link, dp_pred, h.tp_bandwidth / 1e9,
                          h.sp_bandwidth / 1e9)
            : std::string());
  return c;
}

}  // namespace dtrain
