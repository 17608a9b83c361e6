// `dtrain inspect PATH [--verify]`: a checkpoint's step, layout, config and
// tensors (checkpoint/inspect.h); --verify reads every tensor back;
// --verify-key FILE refuses a checkpoint not signed by that key.
#include <cstdio>
#include <memory>
#include <string>

#include "checkpoint/inspect.h"
#include "core/printable.h"
#include "commands.h"

namespace dtrain_cli {

Subcommand add_inspect(CLI::App& app) {
  struct Opts {
    std::string path;
    bool verify = false;
    std::string verify_key;
  };
  auto o = std::make_shared<Opts>();
  auto* inspect = app.add_subcommand("inspect", "Describe a checkpoint: step, layout, config, tensors");
  inspect->add_option("path", o->path, "A checkpoint, its checkpoint.h5, or a directory of them")->required();
  inspect->add_flag("--verify", o->verify, "Also read every tensor back and check its checksum");
  inspect->add_option("--verify-key", o->verify_key,
                      "Refuse the checkpoint unless it is signed by this key (a dtrain keygen .pub file, or the "
                      "secret .key)");
  return {inspect, [o](Context& ctx) {
            const std::string text = dtrain::describe_checkpoint(o->path, o->verify, o->verify_key);
            if (ctx.world_rank == 0) std::fputs(dtrain::printable(text, /*keep_lines=*/true).c_str(), stdout);
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
