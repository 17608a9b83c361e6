#include "parallel/layout.h"

namespace dtrain {

std::string Layout::str() const { return fmt::format("dp={} tp={} pp={}", dp, tp, pp); }
std::string Coord::str() const { return fmt::format("(dp {}, tp {}, pp {})", dp, tp, pp); }

Coord Layout::coord_of(int world_rank) const {
  DTRAIN_CHECK(0 <= world_rank && world_rank < world(), "rank {} outside layout {}", world_rank, str());
  return Coord{.dp = world_rank / tp % dp, .tp = world_rank % tp, .pp = world_rank / (tp * dp)};
}

void Layout::validate(int world_size) const {
  std::vector<std::string> problems;
  for (auto [key, v] : {std::pair{"parallel.dp", dp}, {"parallel.tp", tp}, {"parallel.pp", pp}})
    if (v < 1) problems.push_back(fmt::format("{} = {}: a degree must be at least 1", key, v));
  if (problems.empty() && dp * tp * pp != world_size)
    problems.push_back(fmt::format(
        "parallel.dp x parallel.tp x parallel.pp = {} x {} x {} = {} does not match the world "
        "size {} (the number of ranks the job was started with)",
        dp, tp, pp, dp * tp * pp, world_size));
  if (!problems.empty()) throw ConfigError(problems);
}

SelfGroups::SelfGroups() {
  for (const char* name : {"world", "dp", "tp", "pp", "embed"}) owned_.push_back(make_self_communicator(name));
  groups_.world = owned_[0].get();
  groups_.dp = owned_[1].get();
  groups_.tp = owned_[2].get();
  groups_.pp = owned_[3].get();
  groups_.embed = owned_[4].get();
}

}  // namespace dtrain
