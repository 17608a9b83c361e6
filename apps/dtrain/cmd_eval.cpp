// `dtrain eval CHECKPOINT`: a checkpoint's loss on validation data, by the
// trainer's own evaluation (Trainer::evaluate: the same forward, precision,
// device and micro-batches as the eval_loss a run logs), on one process or
// every rank of a launch, in any layout (as resume: the checkpoint's by
// default on as many ranks, one process otherwise, --set parallel.* for
// another). It reads only: nothing is locked or written, the optimizer state
// stays on disk, and the training data need not be there (dtrain::resume,
// ResumeRequest::evaluate_only). The result is one line on stdout (--json: a
// JSON object); what was loaded and read goes to stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "checkpoint/hf.h"
#include "checkpoint/resume.h"
#include "checkpoint/session.h"
#include "checkpoint/signing.h"
#include "config/schema.h"
#include "core/comm.h"
#include "core/error.h"
#include "dist/mesh.h"
#include "dist/mpi_runtime.h"
#include "parallel/auto_layout.h"
#include "commands.h"
#include "training.h"

namespace dtrain_cli {

namespace {

struct EvalOptions {
  std::string path, data, verify_key;
  std::vector<std::string> overrides;
  std::optional<uint64_t> batches;
  bool all = false;  // every complete checkpoint of the run's directory, oldest first
  bool json = false;
  bool verbose = false;
};

// One result: a line in the run's evaluation format (`what`: "step 30/30",
// or the Hugging Face directory), or a JSON object.
std::string result_line(const EvalOptions& o, const dtrain::Config& cfg, const std::string& what,
                        std::optional<int64_t> step, const dtrain::EvalResult& e, int64_t batches, double secs) {
  const bool gpt = cfg.model.type == "gpt";
  const char* item = gpt ? "tokens" : "images";
  if (o.json) {
    nlohmann::json j = {{step ? "checkpoint" : "model", what},
                        {"data", gpt ? cfg.data.val : cfg.data.val_images},
                        {"micro_batches", batches},
                        {"micro_batch", cfg.train.micro_batch},
                        {"items", e.items},
                        {"item", item},
                        {"loss", e.loss},
                        {"seconds", secs}};
    if (step) j["step"] = *step;
    if (gpt) j["perplexity"] = std::exp(e.loss);
    else j["accuracy"] = e.accuracy;
    return j.dump();
  }
  // The step as the run's log writes it (a checkpoint beyond the config's train.steps: without the total).
  const std::string at = !step                        ? what
                         : *step <= cfg.train.steps ? fmt::format("step {:>6}/{}", *step, cfg.train.steps)
                                                     : fmt::format("step {:>6}", *step);
  if (gpt)
    return fmt::format("eval  {} | loss {:.4f} | perplexity {:.3f} | {} {} in {:.2f} s", at, e.loss, std::exp(e.loss),
                       e.items, item, secs);
  return fmt::format("eval  {} | loss {:.4f} | accuracy {:.2f}% | {} {} in {:.2f} s", at, e.loss, 100.0 * e.accuracy,
                     e.items, item, secs);
}

// Whether a --set gives `key`.
bool chosen(const EvalOptions& o, const std::string& key) {
  return std::any_of(o.overrides.begin(), o.overrides.end(),
                     [&](const std::string& s) { return s.substr(0, s.find('=')) == key; });
}

// What `trainer` will read, said once (rank 0, stderr), and its evaluations,
// each a result line on stdout.
class Evaluator {
 public:
  // `as_run`: what the count is when neither --batches nor --set chose it.
  Evaluator(Context& ctx, const EvalOptions& o, dtrain::Trainer& trainer,
            const std::function<void(const std::string&)>& note, const std::string& as_run)
      : ctx_(ctx), o_(o), trainer_(trainer) {
    const dtrain::Config& cfg = trainer.config();
    const bool gpt = cfg.model.type == "gpt";
    const int64_t micro = cfg.train.micro_batch, total = trainer.val_samples();
    const int64_t there = (total + micro - 1) / micro;
    batches_ = cfg.train.eval_batches > 0 ? std::min(there, cfg.train.eval_batches) : there;
    const std::string source = gpt ? fmt::format("data.val '{}'", printable(cfg.data.val))
                                   : fmt::format("data.val_images '{}'", printable(cfg.data.val_images));
    const auto count = [](int64_t n, const char* one, const char* many) {
      return fmt::format("{} {}", n, n == 1 ? one : many);
    };
    note(fmt::format("reading {} of the {} of {} in {} ({}){}", batches_, count(there, "micro-batch", "micro-batches"),
                     count(micro, gpt ? "sequence" : "image", gpt ? "sequences" : "images"), source,
                     trainer.val_data(),
                     batches_ == there ? ""
                     : o.batches       ? " (--batches)"
                     : chosen(o, "train.eval_batches") || chosen(o, "train.micro_batch")
                         ? fmt::format(": train.eval_batches = {}; --batches 0 reads them all", cfg.train.eval_batches)
                         : fmt::format(": train.eval_batches = {}, {}; --batches 0 reads them all",
                                       cfg.train.eval_batches, as_run)));
    ctx.shared_failure = false;  // a data file that fails mid-way fails on the ranks that read it
  }

  // An evaluation of the parameters the trainer holds now, and its line (rank 0's).
  struct Result {
    dtrain::EvalResult e;
    std::string line;
  };
  Result measure(const std::string& what, std::optional<int64_t> step) {
    const auto t0 = std::chrono::steady_clock::now();
    const dtrain::EvalResult e = trainer_.evaluate();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return {e, result_line(o_, trainer_.config(), what, step, e, batches_, secs)};
  }
  void print(const Result& r) const {
    if (ctx_.world_rank == 0)
      if (const int err = print_result(r.line))
        throw dtrain::RuntimeError(fmt::format("cannot write the result to stdout: {}", std::strerror(err)));
  }
  dtrain::EvalResult operator()(const std::string& what, std::optional<int64_t> step) {
    const Result r = measure(what, step);
    print(r);
    return r.e;
  }

 private:
  Context& ctx_;
  const EvalOptions& o_;
  dtrain::Trainer& trainer_;
  int64_t batches_ = 0;
};

// Progress on stderr (rank 0's): stdout holds the results alone.
std::function<void(const std::string&)> progress(const Context& ctx) {
  return [rank = ctx.world_rank](const std::string& s) {
    if (rank == 0) eprint("dtrain: {}\n", s);
  };
}

// `dtrain eval hf:DIR --data FILE`: a Hugging Face GPT-2 or LLaMA directory
// (OpenAI's GPT-2, a dtrain export) evaluated on token data, as a baseline for a run's
// own loss: the model's shapes and tokenizer from its config.json
// (hf_model_overrides), its weights by model.init_from.
int run_eval_hf(Context& ctx, const EvalOptions& o) {
  const std::string dir = o.path.substr(3);
  if (dir.empty()) throw dtrain::ConfigError("hf:DIR: expected a Hugging Face directory after 'hf:'");
  if (o.data.empty())
    throw dtrain::ConfigError(fmt::format("--data: {} has no validation data of its own: give a token file or glob "
                                          "pattern (llm.c .bin) in its tokenizer's ids",
                                          printable(o.path)));
  if (o.all) throw dtrain::ConfigError("--all: hf:DIR is one model; --all takes a directory of checkpoints");
  if (!o.verify_key.empty())
    throw dtrain::ConfigError("--verify-key: a Hugging Face directory is not signed; --verify-key checks dtrain "
                              "checkpoints");
  for (const std::string& s : o.overrides)
    if (s.rfind("model.", 0) == 0 && s.substr(0, s.find('=')) != "model.dropout")
      throw dtrain::ConfigError(fmt::format("--set {}: the model is {}'s, as its config.json describes it",
                                            printable(s), printable(o.path)));
  TrainingSetup setup(ctx, o.verbose);
  const auto note = progress(ctx);
  const bool layout_given = chosen(o, "parallel.dp") || chosen(o, "parallel.tp") || chosen(o, "parallel.pp") ||
                            chosen(o, "parallel.mode");
  std::optional<dtrain::Config> loaded;
  setup.agree([&] {
    // The model's keys as a config's lines, then the evaluation's: every
    // sequence of the data (unless --batches) in micro-batches of 8, over
    // the ranks launched as data-parallel replicas (unless --set parallel.*).
    std::vector<std::string> keys = dtrain::hf_model_overrides(dir);
    for (const char* k : {"data.train", "data.val"})
      keys.push_back(std::string(k) + "=" + dtrain::config::toml_string(o.data));
    keys.push_back("train.micro_batch=8");
    keys.push_back("train.grad_accum=1");
    keys.push_back("train.steps=1");
    keys.push_back(fmt::format("train.eval_batches={}", o.batches.value_or(0)));
    if (!layout_given) keys.push_back(fmt::format("parallel.dp={}", ctx.world_size));
    loaded.emplace(dtrain::parse_hf_config(keys, "dtrain eval hf:DIR: its config.json's model",
                                           o.path + " [config.json]", o.overrides, ctx.world_size));
    return std::string();
  });
  const dtrain::Config& cfg = *loaded;
  const dtrain::ModelConfig& m = cfg.model;
  note(fmt::format("evaluating {}: {} of {} blocks, width {}, {} heads{}, {} positions, vocabulary {} ({} ids)", o.path,
                   m.rope() ? "LLaMA" : "GPT-2", m.n_layer, m.n_embd, m.n_head,
                   m.kv_heads() != m.n_head ? fmt::format(" ({} key/value)", m.kv_heads()) : "", m.context_length,
                   m.vocab_size, cfg.data.tokenizer));
  std::unique_ptr<dtrain::Trainer> trainer = setup.make_eval_trainer(cfg, note, /*init_from=*/true);
  for (const std::string& line :
       dtrain::hf_import_as(o.path, [&] { return dtrain::init_trainer_from(*trainer, cfg.data.tokenizer); }))
    note(line);
  Evaluator evaluate(ctx, o, *trainer, note, "");
  evaluate(o.path, std::nullopt);
  return kExitOk;
}

int run_eval(Context& ctx, const EvalOptions& o) {
  if (o.path.rfind("hf:", 0) == 0) return run_eval_hf(ctx, o);
  if (o.all && dtrain::find_checkpoints(o.path).exact)
    throw dtrain::ConfigError(fmt::format("--all: '{}' is one checkpoint; give the directory that holds them",
                                          printable(o.path)));
  TrainingSetup setup(ctx, o.verbose);
  const auto note = progress(ctx);
  std::vector<std::string> overrides = o.overrides;
  if (o.batches) overrides.push_back(fmt::format("train.eval_batches={}", *o.batches));
  std::optional<dtrain::Mesh> all;
  dtrain::SelfGroups alone;  // one process without MPI
  dtrain::Communicator& world =
      ctx.mpi ? all.emplace(dtrain::MeshLayout{ctx.world_size, 1, 1}, setup.comm).world() : *alone.groups().world;
  std::string layout_why;
  dtrain::Resumed r = dtrain::resume(
      {.path = o.path,
       .overrides = overrides,
       .out_dir = {},
       .verify_key_file = o.verify_key,
       .world_size = ctx.world_size,
       .auto_layout = dtrain::make_auto_layout([&](const std::string& why) {
         if (std::exchange(layout_why, why).empty()) note(why);
       }),
       .log = note,
       .warn = [&](const std::string& s) { eprint("dtrain: {}warning: {}\n", ctx.rank_tag, printable(s)); },
       .make_trainer = [&](const dtrain::Config& cfg, bool) { return setup.make_eval_trainer(cfg, note); },
       .agree = [&](const std::function<std::string()>& checks) { setup.agree(checks); },
       .evaluate_only = true,
       .eval_data = o.data},
      world);
  dtrain::Trainer& trainer = *r.trainer;
  Evaluator evaluate(ctx, o, trainer, note, "as the run evaluated");
  if (!o.all) {
    evaluate(r.dir, r.meta.step);
    return kExitOk;
  }

  // --all: the newest loadable checkpoint, which is loaded, is evaluated now
  // (a run still going may prune it next) and said last; the run's other
  // checkpoints (as every rank listed them before the first load: those saved
  // from then on are not waited for) go before it, oldest first, into the
  // same trainer (their parameters only).
  // Each is verified as resume verifies it: with --verify-key, else with the
  // key its own config names. Every rank loads each one; where any rank
  // cannot (damage, pruned by a run still going), all pass it over alike,
  // with a warning, as a resume falls back; a signature that fails (or a key
  // that cannot be read) stops them all, as it stops a resume.
  const dtrain::Candidates& c = r.candidates;
  struct Done {
    int64_t step;
    double loss;
  };
  const Evaluator::Result newest = evaluate.measure(r.dir, r.meta.step);
  std::vector<Done> done;
  size_t passed_over = 0;
  // Oldest first, up to the one the trainer was built for: the newest that
  // loaded from the list (any newer one in it was passed over by that load,
  // and said).
  const auto at = std::find(c.dirs.begin(), c.dirs.end(), r.dir);
  DTRAIN_CHECK(at != c.dirs.end(), "resume loaded {}, which is not among the checkpoints it chose from", r.dir);
  passed_over += static_cast<size_t>(at - c.dirs.begin());
  const std::vector<std::string> order(std::make_reverse_iterator(c.dirs.end()), std::make_reverse_iterator(at + 1));
  for (const std::string& dir : order) {
    const auto k = static_cast<size_t>(std::find(c.dirs.begin(), c.dirs.end(), dir) - c.dirs.begin());
    if (k < c.runs.size() && !c.run.empty() && !c.runs[k].empty() && c.runs[k] != c.run) {
      note(fmt::format("passing over {}: it belongs to another run ({}; the run of {} is {})", dir, c.runs[k], c.root,
                       c.run));
      ++passed_over;
      continue;
    }
    std::optional<dtrain::CheckpointError> damage;
    std::exception_ptr refused;  // a signature that fails, a key that cannot be read
    dtrain::CheckpointMeta meta;
    std::string signed_by;  // the key its signature verified with, for its line
    try {
      const std::shared_ptr<const dtrain::ckpt_sign::PublicKey> key =
          o.verify_key.empty() ? dtrain::evaluation_key_of(dir, o.overrides) : r.key;
      meta = dtrain::restore_trainer(trainer, dir, key.get(), /*optimizer_state=*/false);
      if (key) signed_by = fmt::format("; its signature verified with key {}", key->id());
    } catch (const dtrain::CheckpointSignatureError&) {
      refused = std::current_exception();
    } catch (const dtrain::CheckpointError& e) {
      damage = e;
    } catch (const dtrain::ConfigError&) {
      refused = std::current_exception();
    }
    // [the worst outcome on any rank, whether rank 0 had one]: what rank 0
    // found is said by rank 0 alone; another rank says only its own.
    dtrain::Tensor flag = dtrain::Tensor::zeros(dtrain::Shape{2}, dtrain::DType::f32);
    const float outcome = refused ? 2.0f : damage ? 1.0f : 0.0f;
    flag.data<float>()[0] = outcome;
    flag.data<float>()[1] = ctx.world_rank == 0 ? outcome : 0.0f;
    dtrain::all_reduce(world, flag, dtrain::ReduceOp::max);
    const bool rank0_said = flag.data<float>()[1] != 0;
    if (flag.data<float>()[0] == 2) {
      // Every rank stops; rank 0 reports (its own finding, or that another rank's).
      ctx.shared_failure = true;
      if (refused && (ctx.world_rank == 0 || !rank0_said)) std::rethrow_exception(refused);
      throw dtrain::CheckpointSignatureError(dir, "", "", "another rank could not verify it (its error above)");
    }
    if (flag.data<float>()[0] != 0) {
      std::error_code ec;
      const std::string why =
          !std::filesystem::exists(dir, ec) && !ec
              ? dir + ": removed while being read (a run still going prunes its checkpoints: checkpoint.keep)"
          : damage ? damage->what()
                   : dir + ": another rank could not load its part";
      if (ctx.world_rank == 0 || (damage && !rank0_said))
        eprint("dtrain: {}warning: {}; passed over\n", ctx.rank_tag, why);
      ++passed_over;
      continue;
    }
    note(fmt::format("evaluating {}: step {}{}", dir, meta.step, signed_by));
    done.push_back({meta.step, evaluate(dir, meta.step).loss});
  }
  evaluate.print(newest);
  done.push_back({r.meta.step, newest.e.loss});
  {
    const Done best = *std::min_element(done.begin(), done.end(), [](const Done& a, const Done& b) {
      return a.loss < b.loss;
    });
    note(fmt::format("{} checkpoint{} evaluated{}; the lowest loss, {:.4f}, at step {}", done.size(),
                     done.size() == 1 ? "" : "s",
                     passed_over > 0 ? fmt::format(" ({} passed over, above)", passed_over) : std::string(), best.loss,
                     best.step));
  }
  return kExitOk;
}

}  // namespace

Subcommand add_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Evaluate a checkpoint on validation data (the run's evaluation: loss, perplexity or accuracy), on any "
              "layout; reads only");
  cmd->add_option("checkpoint", o->path,
                  "A checkpoint directory (step_N) or its checkpoint.h5, or a directory of checkpoints (the newest "
                  "complete one); or hf:DIR, a Hugging Face GPT-2 or LLaMA directory (with --data)")
      ->required();
  cmd->add_option("--data", o->data,
                  "A GPT's token file or glob pattern (llm.c .bin) to evaluate on, in place of the run's data.val")
      ->check(path_name());
  cmd->add_option("--batches", o->batches,
                  "Micro-batches to read (default: the run's train.eval_batches, so that the loss is the one it "
                  "logged; 0 = the whole validation set)")
      ->check(whole_number(0, INT64_MAX));
  cmd->add_option("--set", o->overrides,
                  "Override a key of the checkpoint's config (repeatable): train.device=cpu, train.micro_batch=N, "
                  "parallel.dp=D ...")
      ->allow_extra_args(false);
  cmd->add_option("--verify-key", o->verify_key, "Refuse a checkpoint not signed by this key (as for resume)");
  cmd->add_flag("--all", o->all,
                "Every complete checkpoint of the run's directory, oldest first: a line each, then (on stderr) "
                "the step with the lowest loss");
  cmd->add_flag("--json", o->json, "Print each result as one JSON object (a line)");
  cmd->add_flag("--verbose,-v", o->verbose, "As for run");
  return {cmd, [o](Context& ctx) { return run_eval(ctx, *o); }, /*needs_mpi=*/true};
}

}  // namespace dtrain_cli
