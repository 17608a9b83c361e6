#include "parallel/layout.h"

namespace dtrain {

std::string Layout::str() const { return fmt::format("dp={} tp={} pp={}", dp, tp, pp); }
std::string Coord::str() const { return fmt::format("(dp {}, tp {}, pp {})", dp, tp, pp); }

Coord coord_of(const Layout& l, int world_rank) {
  DTRAIN_CHECK(0 <= world_rank && world_rank < l.world(), "rank {} outside layout {}", world_rank, l.str());
  return Coord{.dp = world_rank / l.tp % l.dp, .tp = world_rank % l.tp, .pp = world_rank / (l.tp * l.dp)};
}

int world_rank_of(const Layout& l, const Coord& c) { return c.tp + l.tp * (c.dp + l.dp * c.pp); }

SelfGroups::SelfGroups() {
  for (const char* name : {"world", "dp", "tp", "pp", "embed"}) owned_.push_back(make_self_communicator(name));
  groups_.world = owned_[0].get();
  groups_.dp = owned_[1].get();
  groups_.tp = owned_[2].get();
  groups_.pp = owned_[3].get();
  groups_.embed = owned_[4].get();
}

}  // namespace dtrain
