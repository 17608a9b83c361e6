// `dtrain keys`: every config key with its type, default and help.
#include <cstdio>

#include "commands.h"

namespace dtrain_cli {

Subcommand add_keys(CLI::App& app) {
  auto* keys = app.add_subcommand("keys", "List every config key with its type, default and help");
  return {keys, [](Context& ctx) {
            if (ctx.world_rank == 0) std::fputs(dtrain::describe_keys().c_str(), stdout);
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
