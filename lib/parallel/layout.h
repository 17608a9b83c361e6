// The parallel layout: data x tensor x pipeline degrees, where this rank sits
// in it, and the communicators of its groups. Ranks are laid out tensor-
// parallel fastest (the closest ranks, as on one node, carry the most
// traffic), then data, then pipeline:
//   world rank = tp + tp_degree * (dp + dp_degree * pp).
// lib/dist builds the MPI communicators for a Layout; everything after it
// (the step loop, checkpoints) sees only this struct and the Communicator
// interface, so one process runs the same code with one-member groups.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"

namespace dtrain {

struct Coord {
  int dp = 0, tp = 0, pp = 0;
  bool operator==(const Coord&) const = default;
  std::string str() const;  // "(dp 1, tp 0, pp 1)"
};

struct Layout {
  int dp = 1, tp = 1, pp = 1;
  int world() const { return dp * tp * pp; }
  int world_size() const { return world(); }
  // Throws ConfigError naming parallel.dp/tp/pp unless every degree is >= 1
  // and their product is world_size.
  void validate(int world_size) const;
  int rank_of(const Coord& c) const { return c.tp + tp * (c.dp + dp * c.pp); }
  Coord coord_of(int world_rank) const;
  std::string str() const;  // "dp=2 tp=1 pp=2"
};

inline Coord coord_of(const Layout& l, int world_rank) { return l.coord_of(world_rank); }
inline int world_rank_of(const Layout& l, const Coord& c) { return l.rank_of(c); }

// This rank's place and its groups. The pointers stay owned by whoever built
// them (a dist::Mesh, or SelfGroups below).
struct Groups {
  Layout layout;
  Coord coord;
  Communicator* world = nullptr;
  Communicator* dp = nullptr;     // same tp and pp coordinates
  Communicator* tp = nullptr;     // same dp and pp
  Communicator* pp = nullptr;     // same dp and tp; stage s is member s
  Communicator* embed = nullptr;  // first and last stage of this (dp, tp) when pp > 1
};

// The groups of a run on one process: every group has one member.
class SelfGroups {
 public:
  SelfGroups();
  const Groups& groups() const { return groups_; }

 private:
  std::vector<std::unique_ptr<Communicator>> owned_;
  Groups groups_;
};

}  // namespace dtrain
