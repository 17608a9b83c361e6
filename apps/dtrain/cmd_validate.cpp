// `dtrain validate CONFIG`: the config checked against the number of ranks
// launched (the planner's layout under parallel.mode = "auto"), the files a
// run reads first (data, signing keys, init_from) and its output
// directories, every problem at once; prints the resolved config.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "data/check.h"
#include "data/token_file.h"
#include "data/token_sampler.h"
#include "ops/runtime.h"
#include "core/format_bytes.h"
#include "parallel/auto_layout.h"
#include "commands.h"
#include "training.h"

namespace dtrain_cli {

namespace {

// What each data key given a glob pattern matched (its files were read above).
std::vector<std::string> pattern_notes(const dtrain::Config& cfg) {
  std::vector<std::pair<std::string, std::string>> keys;
  if (!cfg.model.token_model()) return {};
  for (size_t i = 0; i < cfg.data.train.size(); ++i)
    keys.emplace_back(cfg.data.train.size() > 1 ? fmt::format("data.train[{}]", i) : "data.train", cfg.data.train[i]);
  keys.emplace_back("data.val", cfg.data.val);
  std::vector<std::string> out;
  const int64_t T = cfg.train.seq_len;
  for (const auto& [key, pattern] : keys)
    if (dtrain::is_glob_pattern(pattern)) {
      const dtrain::TokenCorpus corpus(pattern);
      const int64_t windows = dtrain::TokenSampler(corpus, T, 0, false).windows();  // > 0: checked above
      const auto too_short = std::count_if(corpus.files().begin(), corpus.files().end(),
                                           [&](const dtrain::TokenFile& f) { return f.size() < T + 1; });
      const size_t n = corpus.files().size();
      out.push_back(printable(fmt::format(
          "{}: '{}' matches {} file{} ({} to {}): {} tokens, {} sequences of train.seq_len + 1 = {}{}", key, pattern,
          n, n == 1 ? "" : "s", corpus.files().front().path(), corpus.files().back().path(), corpus.size(), windows,
          T + 1,
          too_short ? fmt::format(" ({} file{} shorter than that give{} none)", too_short, too_short == 1 ? "" : "s",
                                  too_short == 1 ? "s" : "")
                    : "")));
    }
  return out;
}

// What each rank's device would hold, as `dtrain run` checks it before
// allocating: the cost model's memory for the config's layout, on
// check_hardware (nothing here asks the device: a GPU run without
// parallel.hardware is counted on the H100's preset).
std::string memory_line(const dtrain::Config& cfg) {
  const std::optional<dtrain::Prediction> p = dtrain::predict_layout(cfg, dtrain::check_hardware(cfg));
  if (!p) return "";
  return fmt::format("memory per device (cost model, as `dtrain run` checks it): {} in {}: {} ({})",
                     dtrain::describe(p->c), cfg.train.precision, dtrain::format_bytes(p->memory.total()),
                     dtrain::memory_parts(*p));
}

}  // namespace

Subcommand add_validate(CLI::App& app) {
  struct Opts {
    std::string config_path;
    std::vector<std::string> overrides;
  };
  auto o = std::make_shared<Opts>();
  auto* validate = app.add_subcommand("validate", "Check a config and print its resolved values");
  validate->add_option("config", o->config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  validate->add_option("--set", o->overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  return {validate, [o](Context& ctx) {
            std::string layout_why;  // parallel.mode = "auto": what the planner chose and why
            const dtrain::AutoLayout auto_layout =
                dtrain::make_auto_layout([&](const std::string& why) { layout_why = why; });
            dtrain::Config cfg = dtrain::load_config(o->config_path, o->overrides, ctx.world_size, auto_layout);
            // The data files and output directories too, every problem at once.
            std::vector<std::string> problems = input_problems(cfg);
            for (std::string& p : output_problems(cfg)) problems.push_back(std::move(p));
            if (!problems.empty()) throw dtrain::ConfigError(problems);
            if (ctx.world_rank == 0) {
              if (!layout_why.empty()) eprint("dtrain: {}\n", layout_why);
              std::fputs(dtrain::to_toml(cfg).c_str(), stdout);
              eprint("dtrain: {} is valid\n", o->config_path);
              if (std::string line = memory_line(cfg); !line.empty()) eprint("dtrain: {}\n", line);
              if (dtrain::local_sync_is_dp(cfg.parallel))
                eprint("dtrain: note: parallel.sync = local with sync_every = 1 and plain averaging is "
                       "data parallelism: gradients are averaged every step\n");
              if (std::string note = tokenizer_note(cfg); !note.empty()) eprint("dtrain: note: {}\n", note);
              for (const std::string& line : pattern_notes(cfg)) eprint("dtrain: {}\n", line);
              if (std::string why = dtrain::ops::device_unavailable(cfg.train.device); !why.empty())
                eprint("dtrain: note: {}; a run here would stop there\n", why);
            }
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
