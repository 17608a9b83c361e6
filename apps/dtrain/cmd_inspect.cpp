// `dtrain inspect PATH [--verify]`: a checkpoint's step, layout, config and
// tensors (checkpoint/inspect.h); --verify reads every tensor back.
#include <cstdio>
#include <memory>
#include <string>

#include "checkpoint/inspect.h"
#include "commands.h"

namespace dtrain_cli {

Subcommand add_inspect(CLI::App& app) {
  struct Opts {
    std::string path;
    bool verify = false;
  };
  auto o = std::make_shared<Opts>();
  auto* inspect = app.add_subcommand("inspect", "Describe a checkpoint: step, layout, config, tensors");
  inspect->add_option("path", o->path, "A checkpoint, its checkpoint.h5, or a directory of them")->required();
  inspect->add_flag("--verify", o->verify, "Also read every tensor back and check its checksum");
  return {inspect, [o](Context& ctx) {
            const std::string text = dtrain::describe_checkpoint(o->path, o->verify);
            if (ctx.world_rank == 0) std::fputs(text.c_str(), stdout);
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
