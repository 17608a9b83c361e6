#include "profile.h"

#include "core/device.h"
#include "model/block.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/file_kind.h"
#include "kernels/cpu/gemm.h"
#include "core/format_bytes.h"
#include "parallel/auto_layout.h"
#include "parallel/hardware.h"
#include "parallel/pipeline.h"
#include "train/trace_writer.h"

namespace dtrain {

namespace {

using json = nlohmann::ordered_json;

// One rank's summary: a fixed header, then kFields per group, then
// kLayerFields per top-level layer of the whole model (+ the loss).
enum Field : int {
  kRank, kDp, kTp, kPp, kSteps, kStepSeconds, kData, kOptimizer, kPpWait, kDpWait, kReduceSpan, kForward,
  kBackward, kParamBytes, kGradBytes, kOptBytes, kActBytes, kLocalSyncBytes, kPredParams, kPredGrads, kPredOpt, kPredAct,
  kPeakRss, kPeakGflops, kItemsPerStep, kModelFlops, kHeader
};
const char* const kGroups[] = {"dp", "tp", "pp", "embed"};
constexpr int kNumGroups = 4;
enum GroupField : int { kGWait, kGBytes, kGOps, kGBusy, kGSize, kGroupFields };
enum LayerField : int { kLFwd, kLBwd, kLFwdFlops, kLBwdFlops, kLOwned, kLayerFields };

// Per group and collective kind: what the trainer issued, its issue-to-
// completion time and the part of it this rank spent blocked in wait().
enum OpField : int { kOOps, kOBytes, kOBusy, kOBlocked, kOpFields };
constexpr int kNumOps = static_cast<int>(CommOp::count);

int group_at(int g, int f) { return kHeader + g * kGroupFields + f; }
int op_at(int g, int o, int f) { return kHeader + kNumGroups * kGroupFields + (g * kNumOps + o) * kOpFields + f; }
int layer_at(int l, int f) {
  return kHeader + kNumGroups * kGroupFields + kNumGroups * kNumOps * kOpFields + l * kLayerFields + f;
}

double safe_div(double a, double b) { return b > 0 ? a / b : 0.0; }

void write_file(const std::filesystem::path& p, const std::string& text) {
  write_regular_file(p.string(), text, "the profile");
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  if (!f) throw RuntimeError(fmt::format("cannot read '{}'", p.string()));
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string mib(double b) { return fmt::format("{:.2f}", b / (1024.0 * 1024.0)); }

}  // namespace

// A GPU's dense peak (GFLOP/s) from its hardware preset (the planner's,
// datasheet figures), for MFU without --peak-gflops: the bf16 tensor-core
// rate, TF32's (half of it) or plain fp32. 0 for a GPU with no preset (MFU
// then reads 0; give --peak-gflops).
static double gpu_peak_gflops(const Exec& ex, const std::string& precision, bool tf32) {
  const std::string preset = hardware_preset_for_gpu(gpu::device_info(ex.device.index).name);
  if (preset.empty()) return 0;
  const Hardware h = load_hardware(preset);
  return (precision == "bf16" ? h.peak_bf16 : tf32 ? h.peak_bf16 / 2 : h.peak_fp32) / 1e9;
}

std::string run_profile(Trainer& trainer, Profiler& prof, const ProfileOptions& options) {
  namespace fs = std::filesystem;
  const Config& cfg = trainer.config();
  // parallel.sync = "local": whole sync periods, the measured ones starting
  // at a period's start, so that the bytes per step are the mean over them.
  // H = 1 with plain averaging is data parallelism (local_sync_is_dp): the
  // gradients' all-reduce every step, measured as sync = "step".
  ProfileOptions o = options;
  const bool local_sync = trainer.local_sync() != nullptr;
  const int64_t period = local_sync ? cfg.parallel.sync_every : 1;
  o.warmup = (o.warmup + period - 1) / period * period;
  o.steps = std::max<int64_t>(1, (o.steps + period - 1) / period) * period;
  const Groups& g = trainer.groups();
  Communicator& world = *g.world;
  const TrainConfig& t = cfg.train;
  Model& m = trainer.model();
  const int64_t seq_len = train_seq_len(cfg);
  const int chunks = static_cast<int>(trainer.chunks().size());

  std::vector<std::string> names;
  for (const auto& l : m.layers) names.push_back(l->name());
  prof.set_layers(names);
  const bool on_gpu = m.exec.on_cuda();
  const bool measured_peak = o.peak_gflops <= 0 && !on_gpu;
  // On the CPU the peak is the run's own product measured: the sgemm in fp32,
  // in bf16 its bf16 product (AMX, AVX512-BF16: about twice the sgemm's).
  const bool bf16 = t.precision == "bf16";
  std::unique_ptr<ops::Runtime> cpu_rt;
  auto measure_peak = [&] {
    if (!bf16) return measure_sgemm_gflops();
    if (!cpu_rt) cpu_rt = ops::Runtime::open("cpu", 0, false);
    return measure_gemm_rate(*cpu_rt, DType::bf16, 1024, 0.02, 0.2) / 1e9;
  };
  double peak = o.peak_gflops > 0 ? o.peak_gflops : on_gpu ? gpu_peak_gflops(m.exec, t.precision, t.tf32)
                                                            : measure_peak();

  for (int64_t s = 0; s < o.warmup; ++s) trainer.train_step(s);
  Communicator* groups[kNumGroups] = {g.dp, g.tp, g.pp, g.embed};
  CommStats before[kNumGroups];
  world.barrier()->wait();
  prof.reset();
  for (int i = 0; i < kNumGroups; ++i) before[i] = groups[i]->stats();
  double step_seconds = 0;
  for (int64_t s = 0; s < o.steps; ++s) step_seconds += trainer.train_step(o.warmup + s).seconds;
  // Once more after the steps (the best of both): a shared machine's load comes and goes.
  // Every rank's steps done first: a rank that measured while others still
  // timed their last step took the cores they share (4 ranks on 2 cores: the
  // slowest stage measured 25-90% slow).
  if (measured_peak) {
    world.barrier()->wait();
    peak = std::max(peak, measure_peak());
  }

  // This rank's summary.
  const int64_t total_layers = m.total_layers + 1;  // + the loss
  const int n = layer_at(static_cast<int>(total_layers), 0);
  Tensor mine = Tensor::zeros(Shape{n}, DType::f64);
  double* v = mine.data<double>();
  v[kRank] = world.rank();
  v[kDp] = g.coord.dp;
  v[kTp] = g.coord.tp;
  v[kPp] = g.coord.pp;
  v[kSteps] = static_cast<double>(o.steps);
  v[kStepSeconds] = step_seconds;
  v[kData] = prof.seconds(Profiler::Kind::data);
  v[kOptimizer] = prof.seconds(Profiler::Kind::optimizer);
  v[kPpWait] = prof.seconds(Profiler::Kind::pp_wait);
  v[kDpWait] = prof.seconds(Profiler::Kind::dp_wait);
  v[kReduceSpan] = prof.reduction_span_seconds();
  v[kForward] = prof.seconds(Profiler::Kind::forward);
  v[kBackward] = prof.seconds(Profiler::Kind::backward);
  // The masters, and under bf16 their compute copy (ZeRO-3: the shards and
  // the two gather windows).
  v[kParamBytes] = trainer.zero() ? trainer.zero()->param_bytes()
                                  : static_cast<double>(m.params.values().bytes() +
                                                        (m.params.mixed() ? m.params.compute_values().bytes() : 0));
  // ZeRO: the shard (and ZeRO-1's full buffer, or ZeRO-2's windows and tied gradients).
  v[kGradBytes] = trainer.zero() ? trainer.zero()->grad_bytes() : static_cast<double>(m.params.grads().bytes());
  double opt_bytes = 0;
  auto state = trainer.optimizer().state();
  for (const auto& [name, tensor] : state) opt_bytes += static_cast<double>(tensor.bytes());
  v[kOptBytes] = opt_bytes;
  v[kLocalSyncBytes] = trainer.local_sync() ? trainer.local_sync()->bytes() : 0.0;
  v[kActBytes] = prof.plan_bytes();
  // The cost model's prediction: Cost::params x 4 bytes for the fp32 masters
  // (+ 2 for the bf16 compute copy under bf16), the gradients and each
  // optimizer state (ZeRO-1: a 1/dp share of the states). Activations, for
  // each micro-batch copy a stage keeps in flight: every layer's
  // Cost::act_bytes (in the planned dtype), except that the GPT blocks share
  // one set of work buffers (the largest block's Cost::work_bytes), and under
  // full recomputation a block keeps only its input and shares the rest too;
  // the other layers' work buffers are their own; plus the step loop's input,
  // target and pipeline buffers. The stage's copies and chunks share one such
  // set (Model::share_arena), each keeping its own copy of what it hands on
  // out of it: under full recomputation the blocks' last output, and a
  // chunk's input gradient where it starts with a block. Sequence
  // parallelism's model-wide slots once (Cost::shared_bytes).
  const std::string schedule = g.layout.pp > 1 ? cfg.parallel.schedule : "1f1b";
  // Chunk by chunk (one unless interleaved): each chunk's buffers times its
  // copies in flight.
  std::vector<Cost> costs;  // per layer of m, then the loss
  double stage_params = 0, pred_act = 0, shared_block = 0, handed_on = 0, kept_from_shared = 0, model_slots = 0;
  int copies = 0;
  const bool full = m.recompute == Recompute::full;
  auto is_block = [](const std::unique_ptr<Layer>& l) { return dynamic_cast<const Block*>(l.get()) != nullptr; };
  auto bytes_of = [&](const Shape& shape) { return static_cast<double>(shape.numel() * dtype_size(m.dtype)); };
  for (const Trainer::Chunk& ch : trainer.chunks()) {
    const Model& cm = *ch.model;
    const std::vector<Cost> chunk_costs = cm.layer_costs(t.micro_batch);
    double per_slot = 0;
    Shape s = cm.input_shape(t.micro_batch);
    for (size_t i = 0; i < chunk_costs.size(); ++i) {
      const Cost& c = chunk_costs[i];
      costs.push_back(c);
      stage_params += static_cast<double>(c.params);
      model_slots = std::max(model_slots, static_cast<double>(c.shared_bytes));
      const bool block = i < cm.layers.size() && is_block(cm.layers[i]);
      const auto act = static_cast<double>(c.act_bytes), work = static_cast<double>(c.work_bytes);
      const bool block_next = i + 1 < cm.layers.size() && is_block(cm.layers[i + 1]);
      if (!block) {
        per_slot += act + work;
        // A layer's Cost counts its input, not its output: the embedding's
        // buffers before a block are its output (counted by the block as its
        // input, except under full recomputation, where the block keeps a copy
        // of its own), under sequence parallelism the whole sequence it
        // scatters from (t times its slice), and with dropout the output
        // before it.
        if (block_next) {
          const bool sp = cfg.parallel.sequence_parallel && g.layout.tp > 1;
          const double buffers = 1.0 + (sp ? g.layout.tp : 0) + (cfg.model.dropout > 0 ? 1 : 0) - (full ? 0 : 1);
          per_slot += buffers * bytes_of(cm.layers[i]->output_shape(s));
        }
      } else if (full) {
        per_slot += bytes_of(s);  // the block's input
        shared_block = std::max(shared_block, act + work);
        // Its output, which the next layer (ln_f) counts as its input: in the
        // shared set unless the stage's models share it (then handed on).
        if (i + 1 < cm.layers.size() && !block_next) kept_from_shared += bytes_of(cm.layers[i]->output_shape(s));
      } else if (m.recompute == Recompute::selective) {
        const auto remade = static_cast<double>(c.recompute_bytes);
        per_slot += act - remade;
        shared_block = std::max(shared_block, work + remade);
      } else {
        per_slot += act;
        shared_block = std::max(shared_block, work);
      }
      if (i < cm.layers.size()) s = cm.layers[i]->output_shape(s);
    }
    const int64_t mb = t.micro_batch;
    const bool first_is_block = !cm.layers.empty() && is_block(cm.layers.front());
    const bool last_is_block = !cm.layers.empty() && is_block(cm.layers.back());
    const double in = bytes_of(cm.input_shape(mb)), out = cm.last_stage() ? 0.0 : bytes_of(cm.output_shape(mb));
    // What a copy hands on out of the shared set: the input gradient of a
    // chunk starting with a block; under full recomputation the output of one
    // ending with a block, sent.
    handed_on += ((first_is_block ? in : 0.0) + (full && last_is_block ? out : 0.0)) * ch.copies;
    copies += ch.copies;
    // The step loop's input and target buffers, and a later chunk's input,
    // received: its first layer's Cost counts it, except a block's under full
    // recomputation (which counts the copy it keeps).
    const DType data = m.family == ModelFamily::gpt ? DType::i32 : m.dtype;
    per_slot += static_cast<double>(mb * m.sample_shape.numel() * dtype_size(data) + m.target_shape(mb).numel() * 4);
    if (!cm.first_stage() && full && first_is_block) per_slot += in;
    // Its output, sent: the next chunk's first layer counts it, on another
    // model; here its own buffer (in the shared set under full recomputation:
    // above, what a copy hands on).
    if (!(full && last_is_block)) per_slot += out;
    pred_act += per_slot * ch.copies;
  }
  pred_act += shared_block + model_slots + (copies > 1 ? handed_on : -kept_from_shared);
  // The last stage's copy of the tied token embedding (no layer's Cost counts it twice).
  for (const auto& p : m.params.all())
    if (p->trainable && !p->primary) stage_params += static_cast<double>(p->numel());
  // The step loop's buffer for the gradient each chunk but the model's last
  // receives (one per chunk, whatever its copies).
  double pipe_grad = 0;
  for (const Trainer::Chunk& ch : trainer.chunks())
    if (!ch.model->last_stage()) pipe_grad += bytes_of(ch.model->output_shape(t.micro_batch));
  const double states = static_cast<double>(state.size());
  const int zero = trainer.zero_stage();
  const double zero_share = zero >= 1 ? 1.0 / g.layout.dp : 1.0;
  const bool mixed = m.dtype == DType::bf16;  // (ZeRO-3 frees the store's buffers: ask the model)
  v[kPredParams] = stage_params * (mixed ? 6 : 4);
  // ZeRO-1/2 under bf16: the master shard and the whole bf16 copy.
  if (mixed && zero >= 1) v[kPredParams] = std::ceil(stage_params / g.layout.dp) * 4 + stage_params * 2;
  v[kPredGrads] = stage_params * 4;
  if (zero == 1) v[kPredGrads] += std::ceil(stage_params / g.layout.dp) * 4;  // + the reduced shard
  if (zero >= 2) {
    // The shard, two windows of the largest layer's gradients, the tied embedding's.
    double largest = 0, tied = 0;
    for (const auto& p : m.params.all())
      if (p->trainable && p->tied) tied += static_cast<double>(p->numel());
    for (size_t i = 0; i < m.layers.size(); ++i)  // the embedding's window leaves out the tied wte
      largest = std::max(largest, static_cast<double>(costs[i].params) - (i == 0 && m.first_stage() ? tied : 0.0));
    const double shard = std::ceil(stage_params / g.layout.dp);
    v[kPredGrads] = (shard + 2 * largest + tied) * 4;
    // ZeRO-3: the master shard (+ its bf16 copy), and in the compute dtype
    // two gather windows: the widest unit (every parameter a layer reads:
    // the head's is the tied embedding, which no layer's Cost counts for it)
    // and the widest of the units reading no tied parameter.
    if (zero == 3) {
      double wide = 0, narrow = 0;
      for (size_t i = 0; i < m.layers.size(); ++i) {
        const bool head = !m.layers[i]->borrowed_params().empty();
        const double unit = static_cast<double>(costs[i].params) + (head ? tied : 0.0);
        wide = std::max(wide, unit);
        if (!head && !(i == 0 && m.first_stage() && tied > 0)) narrow = std::max(narrow, unit);
      }
      v[kPredParams] = shard * (mixed ? 6 : 4) + (wide + narrow) * (mixed ? 2 : 4);
    }
  }
  v[kPredOpt] = stage_params * 4 * states * zero_share;
  v[kPredAct] = pred_act + pipe_grad;
  v[kPeakRss] = peak_rss_bytes();
  v[kPeakGflops] = peak;
  v[kItemsPerStep] = static_cast<double>(t.global_batch * m.items_per_sample());
  {
    const Cost whole = describe_model(cfg.model, seq_len)->cost(t.micro_batch);
    v[kModelFlops] = (whole.fwd_flops + whole.bwd_flops) * static_cast<double>(t.global_batch / t.micro_batch);
  }
  for (int i = 0; i < kNumGroups; ++i) {
    const CommStats& a = groups[i]->stats();
    v[group_at(i, kGWait)] = a.wait_seconds - before[i].wait_seconds;
    v[group_at(i, kGBytes)] = a.bytes - before[i].bytes;
    v[group_at(i, kGOps)] = static_cast<double>(a.ops - before[i].ops);
    v[group_at(i, kGBusy)] = prof.comm(kGroups[i]).busy_seconds;
    v[group_at(i, kGSize)] = groups[i]->size();
    for (int o = 0; o < kNumOps; ++o) {
      const CommTotals c = prof.comm(kGroups[i], static_cast<CommOp>(o));
      v[op_at(i, o, kOOps)] = c.ops, v[op_at(i, o, kOBytes)] = c.bytes;
      v[op_at(i, o, kOBusy)] = c.busy_seconds, v[op_at(i, o, kOBlocked)] = c.blocked_seconds;
    }
  }
  const double micro = static_cast<double>(t.grad_accum) * static_cast<double>(o.steps);  // FLOPs over the measured steps
  // Index i of m's layers (its chunks' in order) and the whole model's.
  std::vector<int64_t> global_of;
  for (const Trainer::Chunk& ch : trainer.chunks())
    for (size_t i = 0; i < ch.model->layers.size(); ++i) global_of.push_back(ch.model->first_layer + static_cast<int64_t>(i));
  for (size_t i = 0; i <= m.layers.size(); ++i) {
    if (i == m.layers.size() && !m.loss) break;
    const int64_t global = i < m.layers.size() ? global_of[i] : total_layers - 1;
    v[layer_at(static_cast<int>(global), kLFwd)] = prof.layer_seconds(i, false);
    v[layer_at(static_cast<int>(global), kLBwd)] = prof.layer_seconds(i, true);
    v[layer_at(static_cast<int>(global), kLFwdFlops)] = costs[i].fwd_flops * micro;
    v[layer_at(static_cast<int>(global), kLBwdFlops)] = costs[i].bwd_flops * micro;
    v[layer_at(static_cast<int>(global), kLOwned)] = 1;
  }
  const int world_size = world.size();
  Tensor all = Tensor::zeros(Shape{static_cast<int64_t>(n) * world_size}, DType::f64);
  world.all_gather(mine, all)->wait();

  // The trace: every rank writes its fragment, rank 0 joins them.
  const fs::path out(o.out_dir);
  std::error_code ec;
  fs::create_directories(out, ec);
  const fs::path part = out / fmt::format("trace.rank{}.part", world.rank());
  write_file(part, trace_fragment(prof.events(), world.rank(),
                                  fmt::format("rank {} {}", world.rank(), g.coord.str())));
  world.barrier()->wait();
  if (world.rank() != 0) {
    world.barrier()->wait();  // rank 0 has read the fragments
    return "";
  }
  std::vector<std::string> fragments;
  for (int r = 0; r < world_size; ++r) {
    const fs::path p = out / fmt::format("trace.rank{}.part", r);
    fragments.push_back(read_file(p));
    fs::remove(p, ec);
  }
  write_file(out / "trace.json", join_trace(fragments));
  world.barrier()->wait();

  // Rank 0: the report.
  const double* A = all.data<double>();
  auto at = [&](int r, int f) { return A[static_cast<size_t>(r) * n + f]; };
  const double steps = static_cast<double>(o.steps);
  auto ms = [&](double s) { return 1e3 * s / steps; };
  double slowest = 0;
  for (int r = 0; r < world_size; ++r) slowest = std::max(slowest, at(r, kStepSeconds) / steps);
  const double items_per_second = safe_div(at(0, kItemsPerStep), slowest);
  double peak_sum = 0;
  for (int r = 0; r < world_size; ++r) peak_sum += at(r, kPeakGflops);
  const double mfu = safe_div(at(0, kModelFlops) / slowest / 1e9, peak_sum);
  const char* unit = cfg.model.classifier() ? "img/s" : "tok/s";
  const auto whole = describe_model(cfg.model, seq_len);
  std::vector<std::string> all_names;
  for (const auto& l : whole->layers) all_names.push_back(l->name());
  all_names.push_back("loss");

  std::string txt;
  auto line = [&](const std::string& s) { txt += s + "\n"; };
  const std::string peak_product = bf16 ? "bf16 product" : "sgemm";
  line(fmt::format("profile {}: {} model, layout {} on {} rank{}, {} measured steps after {} warm-up, {} thread{} per "
                   "rank, precision {}, {}",
                   o.config_path, cfg.model.type, g.layout.str(), world_size, world_size == 1 ? "" : "s", o.steps,
                   o.warmup, cpu::num_threads(), cpu::num_threads() == 1 ? "" : "s", t.precision,
                   ops::matmul_path(m.exec, bf16 ? DType::bf16 : DType::f32)));
  line(fmt::format("step {:.2f} ms (slowest rank) | {:.0f} {} | {:.4f} GFLOP per step | MFU {:.2f}% of {} x {:.1f} GFLOP/s ({})",
                   1e3 * slowest, items_per_second, unit, at(0, kModelFlops) / 1e9, 100 * mfu, world_size,
                   peak_sum / world_size,
                   measured_peak ? peak_product + " 1024^3 measured per rank"
                   : o.peak_gflops > 0 ? "--peak-gflops" : "the GPU's hardware preset"));

  if (mfu > 1)
    line(fmt::format("  (MFU above 100%: the {} peak was measured low, e.g. on a busy machine; give --peak-gflops)",
                     peak_product));

  const double ideal = g.layout.pp > 1 ? ideal_bubble(schedule, g.layout.pp, static_cast<int>(t.grad_accum), chunks) : 0.0;
  std::vector<std::pair<double, double>> bubbles;  // per stage: pipeline wait, forward + backward
  // Per stage: mean over the stage's ranks of each layer and phase.
  json json_layers = json::array(), json_stages = json::array();
  std::map<std::string, std::array<double, 3>> kinds;  // fwd s, bwd s, flops
  std::vector<std::string> kind_order;
  for (int s = 0; s < g.layout.pp; ++s) {
    std::vector<int> ranks;
    for (int r = 0; r < world_size; ++r)
      if (static_cast<int>(at(r, kPp)) == s) ranks.push_back(r);
    const double k = static_cast<double>(ranks.size());
    auto mean = [&](int f) {
      double x = 0;
      for (int r : ranks) x += at(r, f);
      return x / k;
    };
    const double step = mean(kStepSeconds);
    std::string rl;
    for (int r : ranks) rl += fmt::format("{}{}", rl.empty() ? "" : ",", r);
    line("");
    line(fmt::format("stage {} (ranks {}): {:.2f} ms per step", s, rl, ms(step)));
    line(fmt::format("  {:<26} {:>9} {:>9} {:>7} {:>9} {:>9}", "layer", "fwd ms", "bwd ms", "share", "fwd GF/s", "bwd GF/s"));
    double sum = 0;
    for (int64_t l = 0; l < total_layers; ++l) {
      if (mean(layer_at(static_cast<int>(l), kLOwned)) < 0.5) continue;
      const double f = mean(layer_at(static_cast<int>(l), kLFwd)), b = mean(layer_at(static_cast<int>(l), kLBwd));
      const double ff = mean(layer_at(static_cast<int>(l), kLFwdFlops)), bf = mean(layer_at(static_cast<int>(l), kLBwdFlops));
      const double share = safe_div(f + b, step);
      sum += share;
      const std::string& name = all_names[l];
      line(fmt::format("  {:<26} {:>9.3f} {:>9.3f} {:>6.1f}% {:>9.2f} {:>9.2f}", name, ms(f), ms(b), 100 * share,
                       safe_div(ff, f) / 1e9, safe_div(bf, b) / 1e9));
      json_layers.push_back({{"name", name}, {"kind", layer_kind(name)}, {"stage", s}, {"fwd_ms", ms(f)},
                             {"bwd_ms", ms(b)}, {"share", share}, {"fwd_gflops", safe_div(ff, f) / 1e9},
                             {"bwd_gflops", safe_div(bf, b) / 1e9}, {"fwd_flops_per_step", ff / steps},
                             {"bwd_flops_per_step", bf / steps}});
      const std::string kind = layer_kind(name);
      if (!kinds.count(kind)) kind_order.push_back(kind);
      auto& kk = kinds[kind];
      kk[0] += f;
      kk[1] += b;
      kk[2] += ff + bf;
    }
    const double data = mean(kData), opt = mean(kOptimizer), bubble = mean(kPpWait), dpw = mean(kDpWait);
    const double other = step - (mean(kForward) + mean(kBackward) + data + opt + bubble + dpw);
    for (auto [what, x] : {std::pair<const char*, double>{"data", data}, {"optimizer", opt},
                           {"pipeline wait (bubble)", bubble}, {"dp reduction wait", dpw},
                           {"other (comm, bookkeeping)", other}}) {
      line(fmt::format("  {:<26} {:>9.3f} {:>9} {:>6.1f}%", what, ms(x), "", 100 * safe_div(x, step)));
      sum += safe_div(x, step);
    }
    line(fmt::format("  {:<26} {:>9.3f} {:>9} {:>6.1f}%", "step", ms(step), "", 100 * sum));
    // The bubble against the schedule's ideal, both relative to the stage's
    // compute (forward + backward): what waiting on the pipeline added to it.
    const double busy = mean(kForward) + mean(kBackward);
    bubbles.push_back({bubble, busy});
    json_stages.push_back({{"stage", s}, {"ranks", ranks}, {"step_ms", ms(step)}, {"forward_ms", ms(mean(kForward))},
                           {"backward_ms", ms(mean(kBackward))}, {"data_ms", ms(data)}, {"optimizer_ms", ms(opt)},
                           {"bubble_ms", ms(bubble)}, {"bubble_share", safe_div(bubble, step)},
                           {"bubble_vs_compute", safe_div(bubble, busy)}, {"bubble_ideal", ideal},
                           {"dp_wait_ms", ms(dpw)}, {"other_ms", ms(other)}});
  }

  if (g.layout.pp > 1) {
    line("");
    line(fmt::format("pipeline bubble ({}{}, p = {} stages, m = {} micro-batches): time waiting on the pipeline / the "
                     "stage's forward + backward, against the ideal {}",
                     schedule, chunks > 1 ? fmt::format(" with v = {} chunks per stage", chunks) : "", g.layout.pp,
                     t.grad_accum, chunks > 1 ? "(p-1)/(v m)" : "(p-1)/m"));
    line(fmt::format("  {:<6} {:>9} {:>11} {:>9} {:>9}", "stage", "wait ms", "compute ms", "measured", "ideal"));
    for (size_t s = 0; s < bubbles.size(); ++s)
      line(fmt::format("  {:<6} {:>9.3f} {:>11.3f} {:>8.1f}% {:>8.1f}%", s, ms(bubbles[s].first), ms(bubbles[s].second),
                       100 * safe_div(bubbles[s].first, bubbles[s].second), 100 * ideal));
  }

  // Per layer kind over the whole model: shares of all stages' step time.
  double stage_steps = 0;
  for (int s = 0; s < g.layout.pp; ++s) {
    double x = 0, c = 0;
    for (int r = 0; r < world_size; ++r)
      if (static_cast<int>(at(r, kPp)) == s) x += at(r, kStepSeconds), c += 1;
    stage_steps += x / c;
  }
  line("");
  line(fmt::format("per layer kind (summed over stages; share of the stages' summed step time)"));
  line(fmt::format("  {:<26} {:>9} {:>9} {:>7} {:>9}", "kind", "fwd ms", "bwd ms", "share", "GF/s"));
  json json_kinds = json::array();
  for (const auto& kind : kind_order) {
    const auto& kk = kinds[kind];
    line(fmt::format("  {:<26} {:>9.3f} {:>9.3f} {:>6.1f}% {:>9.2f}", kind, ms(kk[0]), ms(kk[1]),
                     100 * safe_div(kk[0] + kk[1], stage_steps), safe_div(kk[2], kk[0] + kk[1]) / 1e9));
    json_kinds.push_back({{"kind", kind}, {"fwd_ms", ms(kk[0])}, {"bwd_ms", ms(kk[1])},
                          {"share", safe_div(kk[0] + kk[1], stage_steps)},
                          {"gflops", safe_div(kk[2], kk[0] + kk[1]) / 1e9}});
  }

  // Communication: mean per rank and step over the group's members.
  line("");
  line("communication (mean per rank and step; busy = issue to completion, may overlap compute; tp time is also inside the layers)");
  line(fmt::format("  {:<6} {:>5} {:>7} {:>10} {:>11} {:>9} {:>9}", "group", "size", "ops", "MiB", "blocked ms", "busy ms", "GB/s"));
  json json_comm = json::object();
  for (int i = 0; i < kNumGroups; ++i) {
    double w = 0, bytes = 0, ops = 0, busy = 0, c = 0, size = 0;
    for (int r = 0; r < world_size; ++r) {
      if (at(r, group_at(i, kGSize)) < 2) continue;
      w += at(r, group_at(i, kGWait)), bytes += at(r, group_at(i, kGBytes)), ops += at(r, group_at(i, kGOps));
      busy += at(r, group_at(i, kGBusy)), size = at(r, group_at(i, kGSize)), c += 1;
    }
    if (c == 0) continue;
    w /= c, bytes /= c, ops /= c, busy /= c;
    const double gbps = safe_div(bytes, busy) / 1e9;
    line(fmt::format("  {:<6} {:>5.0f} {:>7.1f} {:>10.3f} {:>11.3f} {:>9.3f} {:>9.3f}", kGroups[i], size, ops / steps,
                     bytes / steps / 1048576.0, ms(w), ms(busy), gbps));
    json_comm[kGroups[i]] = {{"size", std::llround(size)}, {"ops_per_step", ops / steps},
                             {"bytes_per_step", bytes / steps}, {"blocked_ms", ms(w)}, {"busy_ms", ms(busy)},
                             {"bandwidth_gbps", gbps}};
  }
  if (json_comm.empty()) line("  (one rank per group: no communication)");
  if (local_sync && g.layout.dp > 1)
    line(fmt::format("  dp: parallel.sync = \"local\": parameters synced every {} steps (no gradient all-reduce); "
                     "bytes are per step over {} whole periods", period, o.steps / period));
  if (local_sync_is_dp(cfg.parallel) && g.layout.dp > 1)
    line("  dp: parallel.sync = \"local\" with sync_every = 1 and plain averaging is data parallelism: gradients "
         "all-reduced every step");

  // Each collective kind: hidden = the share of its issue-to-completion time
  // this rank was not blocked waiting for it (overlapped with compute or with
  // other collectives). tp's collectives are waited at once inside the layers,
  // so they read as exposed; dp's buckets, ZeRO's gathers and pipeline
  // transfers overlap where the schedule lets them.
  json json_ops = json::array();
  std::vector<std::string> op_lines;
  for (int i = 0; i < kNumGroups; ++i) {
    for (int o = 0; o < kNumOps; ++o) {
      double ops = 0, bytes = 0, busy = 0, blocked = 0, c = 0;
      for (int r = 0; r < world_size; ++r) {
        if (at(r, group_at(i, kGSize)) < 2) continue;
        ops += at(r, op_at(i, o, kOOps)), bytes += at(r, op_at(i, o, kOBytes));
        busy += at(r, op_at(i, o, kOBusy)), blocked += at(r, op_at(i, o, kOBlocked)), c += 1;
      }
      if (c == 0 || ops == 0) continue;
      ops /= c, bytes /= c, busy /= c, blocked /= c;
      const double hidden = busy > 0 ? std::clamp(1.0 - blocked / busy, 0.0, 1.0) : 0.0;
      const char* name = comm_op_name(static_cast<CommOp>(o));
      op_lines.push_back(fmt::format("  {:<6} {:<15} {:>7.1f} {:>10.3f} {:>9.3f} {:>11.3f} {:>7.0f}%", kGroups[i], name,
                                     ops / steps, bytes / steps / 1048576.0, ms(busy), ms(blocked), 100 * hidden));
      json_ops.push_back({{"group", kGroups[i]}, {"op", name}, {"ops_per_step", ops / steps},
                          {"bytes_per_step", bytes / steps}, {"busy_ms", ms(busy)}, {"blocked_ms", ms(blocked)},
                          {"hidden", hidden}});
    }
  }
  if (!op_lines.empty()) {
    line("");
    line("collectives (mean per rank and step; blocked = time waiting for them; hidden = the rest of their busy time)");
    line(fmt::format("  {:<6} {:<15} {:>7} {:>10} {:>9} {:>11} {:>8}", "group", "collective", "ops", "MiB", "busy ms",
                     "blocked ms", "hidden"));
    for (const auto& l : op_lines) line(l);
  }
  json json_overlap = nullptr;
  if (g.layout.dp > 1 && !local_sync) {
    double span = 0, waited = 0;
    for (int r = 0; r < world_size; ++r) span += at(r, kReduceSpan), waited += at(r, kDpWait);
    span /= world_size, waited /= world_size;
    const double hidden = span > 0 ? std::clamp(1.0 - waited / span, 0.0, 1.0) : 0.0;
    line(fmt::format("  dp gradient reduction: buckets in flight {:.3f} ms (first issue to last completion), "
                     "{:.3f} ms waited after the backward: {:.0f}% overlapped with the backward",
                     ms(span), ms(waited), 100 * hidden));
    json_overlap = {{"in_flight_ms", ms(span)}, {"waited_ms", ms(waited)}, {"overlapped", hidden}};
  }

  // Memory per rank.
  line("");
  line("memory per rank, MiB (measured | cost model)");
  line(fmt::format("  {:<5} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9}", "rank", "params",
                   "grads", "optim", "activ", "total", "params", "grads", "optim", "activ", "total", "peak RSS"));
  json json_mem = json::array();
  for (int r = 0; r < world_size; ++r) {
    const double mt = at(r, kParamBytes) + at(r, kGradBytes) + at(r, kOptBytes) + at(r, kActBytes);
    const double pt = at(r, kPredParams) + at(r, kPredGrads) + at(r, kPredOpt) + at(r, kPredAct);
    line(fmt::format("  {:<5} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9}", r,
                     mib(at(r, kParamBytes)), mib(at(r, kGradBytes)), mib(at(r, kOptBytes)), mib(at(r, kActBytes)),
                     mib(mt), mib(at(r, kPredParams)), mib(at(r, kPredGrads)), mib(at(r, kPredOpt)),
                     mib(at(r, kPredAct)), mib(pt), mib(at(r, kPeakRss))));
    auto whole_number = [&](int f) { return std::llround(at(r, f)); };
    json_mem.push_back({{"rank", r},
                        {"dp", whole_number(kDp)},
                        {"tp", whole_number(kTp)},
                        {"pp", whole_number(kPp)},
                        {"step_ms", ms(at(r, kStepSeconds))},
                        {"params_bytes", whole_number(kParamBytes)},
                        {"grads_bytes", whole_number(kGradBytes)},
                        {"optimizer_bytes", whole_number(kOptBytes)},
                        {"activation_bytes", whole_number(kActBytes)},
                        {"predicted",
                         {{"params_bytes", whole_number(kPredParams)},
                          {"grads_bytes", whole_number(kPredGrads)},
                          {"optimizer_bytes", whole_number(kPredOpt)},
                          {"activation_bytes", whole_number(kPredAct)}}},
                        {"peak_rss_bytes", whole_number(kPeakRss)},
                        {"peak_gflops", at(r, kPeakGflops)}});
  }
  // What `dtrain run` checked before allocating (the planner's count for this
  // layout, of its fullest stage), against the fullest rank here.
  json json_check = nullptr;
  {
    double held = 0;
    for (int r = 0; r < world_size; ++r)
      held = std::max(held, at(r, kParamBytes) + at(r, kGradBytes) + at(r, kOptBytes) + at(r, kActBytes) +
                                at(r, kLocalSyncBytes));
    const std::string gpu_name = on_gpu ? gpu::device_info(m.exec.device.index).name : std::string();
    const std::optional<Prediction> planned =
        predict_layout(cfg, check_hardware(cfg, [gpu_name] { return gpu_name; }));
    if (planned && held > 0) {
      const double need = planned->memory.total();
      line(fmt::format("  dtrain run's check (the cost model for this layout's step, its fullest stage): {} ({}); the "
                       "fullest rank here held {} ({:+.1f}%)",
                       format_bytes(need), memory_parts(*planned), format_bytes(held), 100 * (need / held - 1)));
      json_check = {{"predicted_bytes", need}, {"held_bytes", held}, {"stage", planned->memory.stage}};
    }
  }
  line(fmt::format("  (activations measured as the {} growth while the stage's buffers were planned; predicted = "
                   "Cost::act_bytes + work_bytes in {} x micro-batches in flight, the blocks of all of them sharing one "
                   "set of work buffers{})",
                   m.exec.on_cuda() ? "device memory's" : "heap's", t.precision,
                   m.recompute == Recompute::full ? " and keeping only their input" : ""));

  const json report = {{"config", o.config_path},
                       {"model", cfg.model.type},
                       {"layout", {{"dp", g.layout.dp}, {"tp", g.layout.tp}, {"pp", g.layout.pp}}},
                       {"world", world_size},
                       {"threads", cpu::num_threads()},
                       {"steps", o.steps},
                       {"warmup", o.warmup},
                       {"step_ms", 1e3 * slowest},
                       {"items_per_second", items_per_second},
                       {"unit", unit},
                       {"model_flops_per_step", at(0, kModelFlops)},
                       {"peak_gflops", peak_sum / world_size},
                       {"peak_source", measured_peak ? (bf16 ? "bf16 product" : "sgemm") : o.peak_gflops > 0 ? "flag" : "preset"},
                       {"precision", t.precision},
                       {"mfu", mfu},
                       {"stages", json_stages},
                       {"layers", json_layers},
                       {"kinds", json_kinds},
                       {"comm", json_comm},
                       {"sync", {{"mode", local_sync ? "local" : "step"}, {"every", period}, {"measured_steps", o.steps}}},
                       {"dp_overlap", json_overlap},
                       {"collectives", json_ops},
                       {"ranks", json_mem},
                       {"memory_check", json_check}};
  write_file(out / "profile.json", report.dump(2) + "\n");  // NaN and infinities become null
  line("");
  line(fmt::format("wrote {} (open in https://ui.perfetto.dev or chrome://tracing) and {}",
                   (out / "trace.json").string(), (out / "profile.json").string()));
  return txt;
}

}  // namespace dtrain
