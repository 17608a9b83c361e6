// Subcommands that live in files of their own (export.cpp, generate.cpp):
// each adds its options to the CLI app and returns what to run when it was
// the one parsed. main.cpp registers them in a few lines.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "config/config.h"

namespace dtrain_cli {

struct Subcommand {
  CLI::App* cli = nullptr;
  std::function<int()> run;  // on rank 0; returns the exit status
};

Subcommand add_export(CLI::App& app);    // dtrain export CHECKPOINT --format hf --out DIR
Subcommand add_generate(CLI::App& app);  // dtrain generate CHECKPOINT [--prompt ...]

// `dtrain --version --verbose`: compiled and loaded library versions, the
// GPUs, MPI, HDF5, the CPU's matrix-product paths (version.cpp).
std::string version_report();

// log.plot: draws <log.out_dir>/loss.png at the end of a run (plot.cpp).
void plot_run(const dtrain::Config& cfg, const std::function<void(const std::string&)>& log);

}  // namespace dtrain_cli
