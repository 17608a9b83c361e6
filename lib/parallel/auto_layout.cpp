#include "parallel/auto_layout.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>

#include "config/footprint.h"
#include "config/dtrain_file.h"
#include "config/schema.h"
#include "config/toml_doc.h"
#include "config/validate.h"
#include "core/device.h"
#include "core/error.h"
#include "core/format_bytes.h"

namespace dtrain {

namespace {


// An integer a choice gives (`source`: "--set key=value", or the file's line).
int64_t parse_int(const std::string& source, const std::string& value, int64_t least) {
  int64_t v = 0;
  const char* end = value.data() + value.size();
  auto [p, ec] = std::from_chars(value.data(), end, v);
  if (ec != std::errc() || p != end || v < least)
    throw ConfigError(fmt::format("{}: expected an integer >= {}", source, least));
  return v;
}

}  // namespace

PlanRequest plan_request(const Config& cfg, int devices, const Hardware& hardware) {
  PlanRequest r;
  r.model = cfg.model;
  r.seq_len = train_seq_len(cfg);
  r.workload.global_batch = cfg.train.global_batch;
  r.workload.precision = cfg.train.precision;
  r.workload.optimizer = cfg.optim.name;
  // This trainer's SGD keeps its momentum buffer whatever optim.momentum (a
  // state of the optimizer and its checkpoints).
  r.workload.momentum = cfg.optim.momentum > 0 || cfg.optim.name == "sgd";
  r.workload.bucket_bytes = cfg.parallel.bucket_mb * 1024.0 * 1024.0;
  if (local_sync_active(cfg.parallel)) {
    r.workload.local_sync_every = cfg.parallel.sync_every;
    r.workload.outer_momentum = cfg.parallel.outer_optim == "nesterov";
  }
  r.workload.overlap = cfg.parallel.overlap;
  r.devices = devices;
  r.hardware = hardware;
  return r;
}

std::optional<Prediction> predict_layout(const Config& cfg, const Hardware& hardware) {
  const auto& par = cfg.parallel;
  const int world = static_cast<int>(par.dp * par.tp * par.pp);
  PlanRequest r = plan_request(cfg, world, hardware);
  // Memory unbounded, so that the prediction comes back whatever it needs;
  // every rank one node's, so that no tp group spans two (the run's ranks are
  // where they were launched, which the check does not judge).
  r.hardware.memory_bytes = std::numeric_limits<double>::max() / 4;
  r.hardware.devices_per_node = world;
  r.features = r.runnable = Features::this_trainer();
  const bool gpt = cfg.model.family() == ModelFamily::gpt;
  if (!gpt) r.features.recompute = r.runnable.recompute = r.features.selective = r.runnable.selective = false;
  r.dp = static_cast<int>(par.dp);
  r.tp = static_cast<int>(par.tp);
  r.pp = static_cast<int>(par.pp);
  r.micro_batch = cfg.train.micro_batch;
  r.micro_batches = cfg.train.grad_accum;
  r.zero = par.dp > 1 ? static_cast<int>(par.zero) : 0;
  r.recompute = !gpt ? -1 : cfg.train.recompute == "full" ? 2 : cfg.train.recompute == "selective" ? 1 : 0;
  r.schedule = par.pp > 1 ? par.schedule : "";
  r.virtual_stages = par.pp > 1 && par.schedule == "interleaved" ? static_cast<int>(par.virtual_stages) : 1;
  r.sequence_parallel = gpt ? (par.tp > 1 && par.sequence_parallel ? 1 : 0) : -1;
  r.max_idle_fraction = 0;
  try {
    const Plan plan = make_plan(r);
    if (plan.feasible.empty()) return std::nullopt;
    return plan.feasible.front().p;
  } catch (const ConfigError&) {  // a precision or feature the hardware description lacks
    return std::nullopt;
  }
}

Hardware check_hardware(const Config& cfg, const std::function<std::string()>& gpu_name) {
  const bool gpu = cfg.train.device == "cuda";
  Hardware hw = load_hardware(gpu ? "h100-sxm" : "cpu-local");
  if (!cfg.parallel.hardware.empty() || (gpu && gpu_name)) {
    try {
      hw = config_hardware(cfg, gpu_name);
    } catch (const ConfigError&) {
    }
  }
  // What the memory counts take from the description is how this trainer's
  // backend for train.device holds attention, whatever a file says (a GPU
  // preset for a CPU run, a what-if runtime).
  hw.kernels = gpu ? Kernels::dtrain_cuda : Kernels::per_op;
  hw.fused_attention = false;
  return hw;
}

std::string memory_parts(const Prediction& p) {
  const Memory& m = p.memory;
  return fmt::format("{}parameters {}, gradients {}, optimizer {}, activations {}{}{}",
                     p.c.pp > 1 ? fmt::format("stage {}: ", m.stage) : "", format_bytes(m.params),
                     format_bytes(m.grads), format_bytes(m.optimizer), format_bytes(m.activations),
                     m.update_copy > m.activations
                         ? fmt::format(", or the update's gradient copy {}", format_bytes(m.update_copy))
                         : std::string(),
                     m.local_sync > 0 ? fmt::format(", local sync {}", format_bytes(m.local_sync)) : std::string());
}

std::string fit_problem(const Config& cfg, const Hardware& hardware, int ranks, const std::string& device,
                        double free_bytes, double total_bytes) {
  ranks = std::max(ranks, 1);
  const std::optional<Prediction> p = predict_layout(cfg, hardware);
  const double each = p ? p->memory.total() : config::footprint(cfg).total(), need = each * ranks;
  if (need <= free_bytes) return "";
  std::string what = "the model and batch", parts;
  if (p) what = fmt::format("{} in {}", describe(p->c), cfg.train.precision), parts = memory_parts(*p);
  const std::string bytes = fmt::format("{:.0f} bytes", need);
  const std::string amount =
      ranks == 1     ? fmt::format("{} ({}{})", format_bytes(need), bytes, parts.empty() ? "" : ": " + parts)
      : parts.empty() ? fmt::format("{} per rank, {} ({}) for its {} ranks", format_bytes(each), format_bytes(need),
                                    bytes, ranks)
                      : fmt::format("{} per rank ({}), {} ({}) for its {} ranks", format_bytes(each), parts,
                                    format_bytes(need), bytes, ranks);
  const std::string has = free_bytes < total_bytes
                              ? fmt::format("{} free of {}", format_bytes(free_bytes), format_bytes(total_bytes))
                              : fmt::format("{} of memory", format_bytes(total_bytes));
  return fmt::format("{}: {} would need about {} on {}, which has {}; `dtrain plan` shows what each layout needs per "
                     "device (more tp or pp, ZeRO, recomputation or a smaller train.micro_batch)",
                     cfg.source.empty() ? "config" : cfg.source, what, amount, device, has);
}

Hardware config_hardware(const Config& cfg, const std::function<std::string()>& gpu_name) {
  std::string name = cfg.parallel.hardware;
  if (name.empty() && cfg.train.device == "cuda") {
    const std::string presets = "h100-sxm, h200, a100-80gb";
    if (!gpu_name)
      throw ConfigError(fmt::format("parallel.hardware: the config trains on cuda; name its GPUs with --hardware or "
                                    "parallel.hardware ({}, or a file from dtrain profile --write-hardware): "
                                    "cpu-local, the default, describes this CPU",
                                    presets));
    std::string gpu;
    try {
      gpu = gpu_name();
    } catch (const std::exception& e) {
      throw ConfigError(fmt::format("train.device: cuda: {} (parallel.hardware names the GPUs to plan for without "
                                    "asking the device)",
                                    e.what()));
    }
    name = hardware_preset_for_gpu(gpu);
    if (name.empty())
      throw ConfigError(fmt::format("parallel.hardware: no preset describes the GPU '{}' ({}); set parallel.hardware "
                                    "to a file from dtrain profile --write-hardware, or to the nearest preset",
                                    gpu, presets));
  }
  try {
    return load_hardware(name.empty() ? "cpu-local" : name);
  } catch (const ConfigError& e) {
    std::vector<std::string> p;
    for (const std::string& what : e.problems())
      p.push_back(fmt::format("{}parallel.hardware: {}", cfg.source.empty() ? "" : cfg.source + ": ", what));
    throw ConfigError(p);
  }
}

std::string explain_choice(const Plan& plan) {
  const PlannedLayout* best = plan.best_runnable();
  if (!best) return fmt::format("no layout of {} devices fits", plan.devices);
  const Prediction& p = best->p;
  std::string s = fmt::format("auto layout for {} ranks on {} in {}: {}\n", plan.devices, plan.hardware.name,
                              plan.precision, describe(p.c));
  const std::string sharing =
      p.sharing_seconds > 0 ? fmt::format(", {:.3g} s of it waiting for the compute units ranks share", p.sharing_seconds)
                            : "";
  s += fmt::format("  predicted {:.4g} s/step (pipeline {:.3g} s with a {:.0f}% bubble{}, tp {:.3g} s, p2p {:.3g} s; "
                   "dp exposed {:.3g} s; update {:.3g} s), {:.4g} items/s, MFU {:.1f}%, memory {} of {}\n",
                   p.step_seconds, p.pipeline_seconds, 100 * p.bubble_fraction, sharing, p.tp_seconds, p.pp_seconds,
                   p.dp_exposed_seconds, p.optimizer_seconds, p.tokens_per_second, 100 * p.mfu,
                   format_bytes(p.memory.total()), format_bytes(p.capacity));
  const PlannedLayout* next = nullptr;
  for (const PlannedLayout& l : plan.feasible)
    if (&l != best && l.runnable()) {
      next = &l;
      break;
    }
  if (next)
    s += fmt::format("  runner-up {}: {:.4g} s/step (+{:.1f}%); ", describe(next->p.c), next->p.step_seconds,
                     100 * (next->p.step_seconds / p.step_seconds - 1));
  else
    s += "  no other layout fits; ";
  // `dtrain plan` plans a GPU in bf16 unless told: the command that lists these names the precision.
  s += fmt::format("{} candidates ranked, {} rejected; `dtrain plan --precision {}` lists them", plan.feasible.size(),
                   plan.rejected.size(), plan.precision);
  return s;
}

AutoLayout make_auto_layout(std::function<void(const std::string&)> explain, std::function<std::string()> gpu_name) {
  if (!gpu_name) gpu_name = [] { return gpu::device_info(0).name; };
  return [explain, gpu_name](const AutoLayoutRequest& q) {
    const Config& cfg = *q.config;
    if (q.hardware_only) {
      (void)config_hardware(cfg, gpu_name);
      return AutoLayoutChoice{};
    }
    PlanRequest r = plan_request(cfg, q.world_size, config_hardware(cfg, gpu_name));
    r.features = r.runnable = Features::this_trainer();
    if (cfg.model.family() != ModelFamily::gpt) r.features.recompute = r.runnable.recompute = false;
    r.runnable_only = true;
    // A recomputation mode the config sets is kept.
    if (q.fixed_recompute)
      r.recompute = cfg.train.recompute == "full" ? 2 : cfg.train.recompute == "selective" ? 1 : 0;
    if (q.fixed_dp) r.dp = static_cast<int>(cfg.parallel.dp);
    if (q.fixed_tp) r.tp = static_cast<int>(cfg.parallel.tp);
    if (q.fixed_pp) r.pp = static_cast<int>(cfg.parallel.pp);
    if (q.fixed_micro_batch) r.micro_batch = cfg.train.micro_batch;
    if (q.fixed_grad_accum) r.micro_batches = cfg.train.grad_accum;
    if (q.fixed_zero) r.zero = static_cast<int>(cfg.parallel.zero);
    if (q.fixed_schedule) r.schedule = cfg.parallel.schedule;
    if (q.fixed_virtual_stages) r.virtual_stages = static_cast<int>(cfg.parallel.virtual_stages);
    if (q.fixed_sequence_parallel) r.sequence_parallel = cfg.parallel.sequence_parallel ? 1 : 0;
    r.max_idle_fraction = 0;  // every launched rank takes part
    const Plan plan = make_plan(r);
    const PlannedLayout* best = plan.best_runnable();
    if (!best) {
      // One line, as `dtrain plan` says it.
      throw ConfigError(fmt::format("no layout of {} ranks fits this model and batch ({} samples) on {}: {}",
                                    q.world_size, r.workload.global_batch, plan.hardware.name,
                                    why_nothing_fits(plan)));
    }
    if (explain) {
      // Hardware that describes another kind of device than the run's (a GPU
      // preset for a CPU run, or cpu-local's kind for a GPU one): planned as
      // asked, and said.
      const bool gpu_hardware = plan.hardware.gpu(), gpu_run = cfg.train.device == "cuda";
      std::string note;
      if (gpu_hardware != gpu_run)
        note = fmt::format("\n  note: parallel.hardware '{}' describes {}, and this run trains on {}: the layout is "
                           "planned for that hardware",
                           plan.hardware.name, gpu_hardware ? "GPUs" : "CPU ranks", gpu_run ? "GPUs" : "the CPU");
      explain(explain_choice(plan) + note);
    }
    const Candidate& c = best->p.c;
    AutoLayoutChoice choice;
    choice.dp = c.dp;
    choice.tp = c.tp;
    choice.pp = c.pp;
    choice.micro_batch = c.micro_batch;
    choice.grad_accum = c.micro_batches;
    choice.zero = q.fixed_zero ? cfg.parallel.zero : c.zero;
    choice.schedule = q.fixed_schedule || c.pp == 1 ? cfg.parallel.schedule : c.schedule;
    choice.virtual_stages = choice.schedule == "interleaved" ? c.virtual_stages : 1;
    if (q.fixed_virtual_stages && choice.schedule == "interleaved") choice.virtual_stages = cfg.parallel.virtual_stages;
    choice.sequence_parallel = c.tp > 1 && c.sequence_parallel;
    if (!q.fixed_recompute && cfg.model.family() == ModelFamily::gpt) choice.recompute = recompute_name(c.recompute);
    return choice;
  };
}

Plan run_plan_command(const PlanCommand& cmd) {
  // The config is read as for one process (its own degrees set aside); the
  // choices --set gives for the layout become the plan's constraints.
  // A constraint: "key=value" and where it came from, for its errors.
  struct Constraint {
    std::string text, source;
  };
  std::vector<std::string> config_overrides;
  std::vector<Constraint> constraints;
  bool sets_global = false, sets_split = false;
  std::string global_value, micro_set;
  for (const std::string& o : cmd.overrides) {
    const std::string key = o.substr(0, o.find('='));
    if (key == "parallel.dp" || key == "parallel.tp" || key == "parallel.pp" || key == "parallel.zero" ||
        key == "parallel.schedule" || key == "parallel.mode" || key == "parallel.virtual_stages" ||
        key == "parallel.sequence_parallel" || key == "train.recompute") {
      constraints.push_back({o, "--set " + o});
      continue;
    }
    if (key == "train.micro_batch") {  // the config read takes it only where it makes the batch (below)
      constraints.push_back({o, "--set " + o});
      micro_set = o;
      continue;
    }
    if (key == "train.global_batch") sets_global = true, global_value = o.substr(o.find('=') + 1);
    sets_split |= key == "train.grad_accum" && o.substr(o.find('=') + 1) != "0";  // 0: derived, no split given
    config_overrides.push_back(o);
  }
  for (const char* o : {"parallel.mode=manual", "parallel.dp=1", "parallel.tp=1", "parallel.pp=1"})
    config_overrides.push_back(o);
  // The file as TOML, for what the loaded Config does not keep (which keys it
  // sets); load_config says what is wrong with a file that cannot be read or
  // parsed, and try_parse_toml keeps from the parser what would crash it.
  std::optional<config::TomlDoc> doc;
  try {
    doc = config::try_parse_toml(config::read_toml_file(cmd.config_path, "config"), cmd.config_path);
  } catch (const std::exception&) {
  }
  auto in_file = [&](const std::string& dotted) -> const config::TomlDoc* {
    const size_t dot = dotted.find('.');
    const std::string section = dotted.substr(0, dot), key = dotted.substr(dot + 1);
    if (!doc || !doc->contains(section) || !doc->at(section).is_table() || !doc->at(section).contains(key))
      return nullptr;
    return &doc->at(section).at(key);
  };
  // The value the last --set gives `dotted`, if any.
  auto set_value = [&](const std::string& dotted) -> std::optional<std::string> {
    std::optional<std::string> v;
    for (const std::string& o : cmd.overrides)
      if (o.rfind(dotted + "=", 0) == 0) v = o.substr(dotted.size() + 1);
    return v;
  };
  auto given = [&](const std::string& dotted) { return set_value(dotted).has_value(); };
  // A global batch (the file's or a --set's): the config reads it as one
  // process's split into micro-batches, which the plan sets aside (a run's
  // written config splits it over its own dp). The smallest micro-batch whose
  // count the config accepts, so that its one-process checks (the memory of
  // one micro-batch, the count) hold for any batch a plan can spread.
  if (const config::TomlDoc* g = in_file("train.global_batch");
      !sets_global && g && g->is_integer() && g->as_integer() > 0)
    global_value = std::to_string(g->as_integer());
  if (!global_value.empty() && !sets_split) {
    int64_t micro = 0;  // 0: the config derives it (and says what is wrong with the batch)
    try {
      const int64_t global = parse_int("--set train.global_batch=" + global_value, global_value, 1);
      const int64_t first = global > 0 ? (global + config::kMaxGradAccum - 1) / config::kMaxGradAccum : 1;
      for (int64_t d = first; global > 0 && d <= global && d < first + config::kMaxGradAccum; ++d)
        if (global % d == 0) {
          micro = d;
          break;
        }
    } catch (const ConfigError&) {
    }
    config_overrides.insert(config_overrides.begin(),
                            {fmt::format("train.micro_batch={}", micro), "train.grad_accum=0"});
  }
  // The micro-batch is the plan's to check against each dp. Where no global
  // batch is given, micro_batch x grad_accum makes it, so the config read
  // takes it; else the file's split stays, and a micro-batch that does not
  // divide the batch is the plan's to say, not blamed on the file.
  if (!micro_set.empty() && global_value.empty()) config_overrides.push_back(micro_set);
  // A plan reads no data: a config without data files (one written for
  // planning) is planned all the same.
  if (doc && !given("model.type")) {
    const config::TomlDoc* type = in_file("model.type");
    for (const std::string& key :
         config::required_data_paths(type && type->is_string() ? type->as_string().str : "gpt"))
      if (!in_file(key) && !given(key))
        config_overrides.push_back(fmt::format("{}=\"(dtrain plan reads no data)\"", key));
  }
  // The layout's modes the file sets are choices it fixes, as parallel.mode =
  // "auto" keeps them (and its log points here): taken as constraints, with
  // the defaults in their place for the one-process config read (where
  // sequence parallelism at tp = 1 would be refused). Not those the planner
  // chose for the run that wrote the file (parallel.planned), nor those a
  // --set rules out (interleaving at pp = 1 or beside another schedule or
  // chunk count given; sequence parallelism at tp = 1): set aside, and said.
  // A value of the wrong type, or a GPT's mode in a CNN's file, stays for
  // load_config to name.
  std::vector<std::string> planned, set_aside;
  if (const config::TomlDoc* p = in_file("parallel.planned"); p && p->is_string())
    planned = planned_keys(p->as_string().str);
  const config::TomlDoc* type = in_file("model.type");
  const bool cnn = type && type->is_string() && type->as_string().str == "cnn";
  for (const auto& [key, neutral] : {std::pair<std::string, std::string>{"parallel.zero", "0"},
                                     {"parallel.schedule", "\"1f1b\""},
                                     {"parallel.virtual_stages", "1"},
                                     {"parallel.sequence_parallel", "false"},
                                     {"train.recompute", "\"none\""}}) {
    const config::TomlDoc* v = in_file(key);
    if (!v || given(key)) continue;
    if (cnn && (key == "parallel.sequence_parallel" || key == "train.recompute")) continue;
    const bool text = key == "parallel.schedule" || key == "train.recompute";
    const bool flag = key == "parallel.sequence_parallel";
    if (text ? !v->is_string() : flag ? !v->is_boolean() : !v->is_integer()) continue;
    const std::string value = text   ? "\"" + v->as_string().str + "\""
                              : flag ? (v->as_boolean() ? "true" : "false")
                                     : std::to_string(v->as_integer());
    config_overrides.push_back(key + "=" + neutral);
    std::string why;
    if (std::find(planned.begin(), planned.end(), key) != planned.end())
      why = "the planner chose it for the run that wrote the file (parallel.planned)";
    else if ((key == "parallel.schedule" || key == "parallel.virtual_stages") && set_value("parallel.pp") == "1")
      why = "--set parallel.pp=1 rules out interleaving";
    else if (key == "parallel.schedule" && given("parallel.virtual_stages"))
      why = "--set parallel.virtual_stages chooses the schedule";
    else if (key == "parallel.virtual_stages" && given("parallel.schedule"))
      why = "--set parallel.schedule chooses the chunks";
    else if (key == "parallel.sequence_parallel" && set_value("parallel.tp") == "1")
      why = "--set parallel.tp=1 rules it out";
    if (!why.empty()) {
      set_aside.push_back(fmt::format("{} = {} ({})", key, value, why));
      continue;
    }
    const int line = static_cast<int>(v->location().line());
    constraints.push_back({key + "=" + value, fmt::format("{}:{}: {} = {}", cmd.config_path, line, key, value)});
  }
  const Config cfg = load_config(cmd.config_path, config_overrides, 1);

  const Hardware hw = cmd.hardware.empty() ? config_hardware(cfg) : load_hardware(cmd.hardware);
  PlanRequest r = plan_request(cfg, cmd.devices, hw);
  if (!cmd.precision.empty()) r.workload.precision = cmd.precision;
  // GPUs train in bf16 unless --precision says otherwise; a CPU as the config says.
  else if (hw.peak_bf16 > 0 && hw.gpu()) r.workload.precision = "bf16";
  if (r.workload.precision != "fp32" && r.workload.precision != "bf16")
    throw ConfigError(fmt::format("--precision {}: expected fp32 or bf16{}", r.workload.precision,
                                  config::did_you_mean(config::suggest_among(r.workload.precision, {"fp32", "bf16"}))));
  // What this trainer runs: it runs every mode the planner models, so there
  // are no what-ifs to add (--runnable lists the same).
  r.features = r.runnable = Features::this_trainer();
  if (r.model.family() != ModelFamily::gpt)  // the CNN
    r.features.recompute = r.features.selective = r.runnable.recompute = r.runnable.selective = false;
  if (cmd.no_idle) r.max_idle_fraction = 0;
  r.find_devices_that_fit = true;  // nothing fits: say on how many devices something would
  r.runnable_only = cmd.runnable_only;
  std::string zero_source;  // where parallel.zero was fixed
  for (const auto& [o, source] : constraints) {
    const auto eq = o.find('=');
    const std::string key = o.substr(0, eq), value = eq == std::string::npos ? "" : o.substr(eq + 1);
    std::string unquoted = value;
    if (unquoted.size() >= 2 && unquoted.front() == '"' && unquoted.back() == '"')
      unquoted = unquoted.substr(1, unquoted.size() - 2);
    if (key == "parallel.schedule") {
      if (unquoted != "1f1b" && unquoted != "gpipe" && unquoted != "interleaved")
        throw ConfigError(fmt::format("{}: expected 1f1b, gpipe or interleaved", source));
      r.schedule = unquoted;
    } else if (key == "train.recompute") {
      if (unquoted != "none" && unquoted != "selective" && unquoted != "full")
        throw ConfigError(fmt::format("{}: expected none, selective or full", source));
      r.recompute = unquoted == "full" ? 2 : unquoted == "selective" ? 1 : 0;
    } else if (key == "parallel.sequence_parallel") {
      if (unquoted != "true" && unquoted != "false")
        throw ConfigError(fmt::format("{}: expected true or false", source));
      r.sequence_parallel = unquoted == "true" ? 1 : 0;
    } else if (key == "parallel.mode") {
      if (unquoted != "auto" && unquoted != "manual")
        throw ConfigError(fmt::format("{}: expected auto or manual", source));
      continue;  // plan always plans
    } else {
      const int64_t v = parse_int(source, value, key == "parallel.zero" ? 0 : 1);  // 0 would read as not fixed
      if (key != "train.micro_batch" && v > kMaxPlanDevices)  // a degree: no more than --devices may be
        throw ConfigError(fmt::format("{}: expected at most {}", source, kMaxPlanDevices));
      if (key == "parallel.dp") r.dp = static_cast<int>(v);
      if (key == "parallel.tp") r.tp = static_cast<int>(v);
      if (key == "parallel.pp") r.pp = static_cast<int>(v);
      if (key == "parallel.zero") {
        if (v > 3) throw ConfigError(fmt::format("{}: expected 0, 1, 2 or 3", source));
        r.zero = static_cast<int>(v);
        zero_source = source;
      }
      if (key == "parallel.virtual_stages") {
        r.virtual_stages = static_cast<int>(v);
        if (v >= 2 && r.schedule.empty()) r.schedule = "interleaved";
      }
      if (key == "train.micro_batch") r.micro_batch = v;
    }
  }
  // Local sync (H > 1, or an outer optimizer) gives every replica its own
  // optimizer, which ZeRO cannot shard: no ZeRO layouts (as validation
  // refuses them). H = 1 with plain averaging is data parallelism and may.
  if (local_sync_active(cfg.parallel)) {
    if (r.zero > 0)
      throw ConfigError(fmt::format("{} with parallel.sync = \"local\" (sync_every {}, outer {}): ZeRO shards one "
                                    "optimizer over the data-parallel replicas, but local sync gives each replica its "
                                    "own",
                                    zero_source, cfg.parallel.sync_every, cfg.parallel.outer_optim));
    r.zero = 0;
  }
  Plan plan = make_plan(r);
  std::vector<std::string> from_file;
  for (const auto& [o, source] : constraints)
    if (source.rfind("--set ", 0) != 0) from_file.push_back(source.substr(source.find(": ") + 2));
  if (!set_aside.empty())
    plan.notes.push_back(fmt::format("the config's {} set aside", fmt::join(set_aside, ", ")));
  if (!from_file.empty())
    plan.notes.push_back(fmt::format("the config's {} {} kept, as parallel.mode = \"auto\" keeps {} (--set the key "
                                     "to plan another choice)",
                                     fmt::join(from_file, ", "), from_file.size() > 1 ? "are" : "is",
                                     from_file.size() > 1 ? "them" : "it"));
  // The config's own micro-batch is a choice here (mode = "auto" keeps it):
  // said, so that the plan and an auto run of the same file do not differ
  // without a word.
  if (const config::TomlDoc* micro = in_file("train.micro_batch");
      r.micro_batch == 0 && micro && micro->is_integer() && micro->as_integer() > 0)
    plan.notes.push_back(fmt::format(
        "the config's train.micro_batch = {} is not kept: the plan chooses each layout's; parallel.mode = \"auto\" "
        "keeps it (--set train.micro_batch={} plans what it would choose from)",
        micro->as_integer(), micro->as_integer()));
  return plan;
}

}  // namespace dtrain
