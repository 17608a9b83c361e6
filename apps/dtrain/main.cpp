// dtrain: the command line. Parses arguments, runs one subcommand, and maps
// dtrain's error kinds to exit codes (only apps/ decides exit codes):
//   0 success, 1 runtime failure, 2 bad config or input, 3 internal error.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "config/config.h"
#include "train/trainer.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitConfig = 2;
constexpr int kExitInternal = 3;

void print_line(const std::string& s) {
  std::fputs(s.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int exit_code_for(const dtrain::Error& e) {
  switch (e.kind()) {
    case dtrain::ErrorKind::kConfig:
    case dtrain::ErrorKind::kInput: return kExitConfig;
    case dtrain::ErrorKind::kRuntime: return kExitRuntime;
    case dtrain::ErrorKind::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

void report(const dtrain::Error& e) {
  if (const auto* ce = dynamic_cast<const dtrain::ConfigError*>(&e)) {
    for (const auto& p : ce->problems()) fmt::print(stderr, "dtrain: error: {}\n", p);
    if (ce->problems().size() > 1)
      fmt::print(stderr, "dtrain: {} problems in the config\n", ce->problems().size());
    return;
  }
  const char* what = e.kind() == dtrain::ErrorKind::kInternal ? "internal error (a dtrain bug)" : "error";
  fmt::print(stderr, "dtrain: {}: {}\n", what, e.what());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dtrain: train GPT-style transformers and CNNs from TOML configs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dtrain ") + DTRAIN_VERSION);

  std::string config_path, out_dir;
  std::vector<std::string> overrides;

  auto* run = app.add_subcommand("run", "Train the model a config describes");
  run->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  run->add_option("--set", overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--out", out_dir, "Output directory (overrides log.out_dir)");

  auto* validate = app.add_subcommand("validate", "Check a config and print its resolved values");
  validate->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  validate->add_option("--set", overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  auto* keys = app.add_subcommand("keys", "List every config key with its type, default and help");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitConfig;
  }

  try {
    if (keys->parsed()) {
      std::fputs(dtrain::describe_keys().c_str(), stdout);
      return kExitOk;
    }
    if (!out_dir.empty()) overrides.push_back("log.out_dir=" + out_dir);
    dtrain::Config cfg = dtrain::load_config(config_path, overrides);
    if (validate->parsed()) {
      std::fputs(dtrain::to_toml(cfg).c_str(), stdout);
      fmt::print(stderr, "dtrain: {} is valid\n", config_path);
      return kExitOk;
    }
    dtrain::Trainer trainer(cfg, print_line);
    trainer.run();
    return kExitOk;
  } catch (const dtrain::Error& e) {
    report(e);
    return exit_code_for(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "dtrain: internal error (a dtrain bug): {}\n", e.what());
    return kExitInternal;
  }
}
