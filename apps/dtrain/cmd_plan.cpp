// `dtrain plan CONFIG --devices N`: the parallel layouts of the config's model
// on N devices ranked by predicted step time (parallel/auto_layout.h), as a
// table or JSON. No training: rank 0 prints, the others return.
#include <cstdio>
#include <memory>
#include <string>

#include "parallel/auto_layout.h"
#include "parallel/plan_report.h"
#include "commands.h"

namespace dtrain_cli {

Subcommand add_plan(CLI::App& app) {
  struct Opts {
    dtrain::PlanCommand cmd;
    bool json = false;
    int top = 10;
  };
  auto o = std::make_shared<Opts>();
  dtrain::PlanCommand& plan_cmd = o->cmd;
  auto* plan = app.add_subcommand(
      "plan", "Rank the parallel layouts of a config's model on N devices by predicted step time "
              "(no training, no GPU); the config's own dp/tp/pp are set aside");
  plan->add_option("config", plan_cmd.config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  plan->add_option("--devices", plan_cmd.devices, "Number of devices (ranks)")->required()->check(whole_number(1, static_cast<int>(dtrain::kMaxPlanDevices)));
  plan->add_option("--hardware", plan_cmd.hardware,
                   "Hardware preset (h100-sxm, h200, a100-80gb, cpu-local) or hardware TOML file; default: the "
                   "config's parallel.hardware, else cpu-local (a cuda config names its GPUs)");
  plan->add_option("--precision", plan_cmd.precision,
                   "fp32 or bf16 (default: bf16 on a GPU, its presets and calibrated files; else the config's "
                   "train.precision)");
  plan->add_option("--set", plan_cmd.overrides,
                   "Override a key (repeatable); parallel.dp/tp/pp/zero/schedule/virtual_stages/"
                   "sequence_parallel, train.recompute and train.micro_batch fix that choice")
      ->allow_extra_args(false);
  plan->add_flag("--json", o->json, "Print the plan as JSON");
  plan->add_option("--top", o->top, "How many layouts to list (0 = all)")->check(whole_number(0, 1 << 30));
  plan->add_flag("--no-idle", plan_cmd.no_idle,
                 "Plan for every device (by default a count that factors badly may leave up to 2% idle)");
  plan->add_flag("--runnable", plan_cmd.runnable_only,
                 "Only layouts this trainer runs (no what-ifs needing a feature it lacks; it runs every mode planned)");
  return {plan, [o](Context& ctx) {
            if (ctx.world_rank != 0) return kExitOk;
            const dtrain::Plan p = dtrain::run_plan_command(o->cmd);
            std::fputs((o->json ? dtrain::format_plan_json(p, o->top) : dtrain::format_plan_text(p, o->top)).c_str(),
                       stdout);
            if (p.feasible.empty()) {  // the plan above says why at length; one line for the error stream
              std::fflush(stdout);
              std::fprintf(stderr, "dtrain: %s\n", dtrain::nothing_fits(p).c_str());
              return kExitConfig;
            }
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
