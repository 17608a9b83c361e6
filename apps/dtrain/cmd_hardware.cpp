// `dtrain hardware NAME`: a hardware preset (or a checked hardware file) in
// the TOML format that --hardware and parallel.hardware read.
#include <cstdio>
#include <memory>
#include <string>

#include "parallel/hardware.h"
#include "commands.h"

namespace dtrain_cli {

Subcommand add_hardware(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  auto* hardware = app.add_subcommand(
      "hardware", "Print a hardware preset (or check and print a hardware file) in the TOML format that "
                  "--hardware and parallel.hardware read");
  hardware->add_option("name", *name, "h100-sxm, h200, a100-80gb, cpu-local, or a .toml file")->required();
  return {hardware, [name](Context& ctx) {
            if (ctx.world_rank == 0) std::fputs(dtrain::write_hardware_toml(dtrain::load_hardware(*name)).c_str(), stdout);
            return kExitOk;
          }};
}

}  // namespace dtrain_cli
