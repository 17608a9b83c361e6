// parallel.device_comm: its values, its default, and nccl refused for a CPU run.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config/config.h"
#include "core/error.h"

using namespace dtrain;

namespace {

const std::string kGpt = "[data]\ntrain = \"t.bin\"\nval = \"v.bin\"\n[train]\nmicro_batch = 4\n";

std::vector<std::string> problems(const std::vector<std::string>& sets) {
  try {
    parse_config(kGpt, "cfg.toml", sets, 1);
  } catch (const ConfigError& e) {
    return e.problems();
  }
  return {};
}

}  // namespace

TEST_CASE("config: parallel.device_comm defaults to auto and takes auto, nccl or mpi") {
  CHECK(parse_config(kGpt, "cfg.toml", {}, 1).parallel.device_comm == "auto");
  CHECK(parse_config(kGpt, "cfg.toml", {"parallel.device_comm=\"mpi\""}, 1).parallel.device_comm == "mpi");
  auto p = problems({"parallel.device_comm=\"gloo\""});
  REQUIRE(p.size() == 1);
  CHECK(p[0].find("parallel.device_comm") != std::string::npos);
  CHECK(p[0].find("nccl") != std::string::npos);
}

TEST_CASE("config: parallel.device_comm = nccl needs train.device = cuda") {
  auto p = problems({"parallel.device_comm=\"nccl\""});
  REQUIRE(p.size() == 1);
  CHECK(p[0] == "--set parallel.device_comm=\"nccl\": parallel.device_comm: nccl carries GPU "
                "tensors, but train.device is cpu; use auto (or mpi)");
}
