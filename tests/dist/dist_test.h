// Helpers of the dist tests: the world's rank and size, every mesh layout of
// a world size, and a short timeout so a broken test fails instead of hanging.
#pragma once

#include <mpi.h>

#include <functional>
#include <string>
#include <vector>

#include "dist/mesh.h"

namespace dtrain::test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

inline int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// Long enough for an oversubscribed machine, short enough that a mismatch fails fast.
inline MpiCommOptions test_options() {
  MpiCommOptions o;
  o.timeout_seconds = 30;
  return o;
}

// Every (dp, tp, pp) whose product is n.
inline std::vector<MeshLayout> layouts_of(int n) {
  std::vector<MeshLayout> out;
  for (int dp = 1; dp <= n; ++dp)
    for (int tp = 1; tp <= n; ++tp)
      if (n % (dp * tp) == 0) out.push_back({dp, tp, n / (dp * tp)});
  return out;
}

// The message of the RuntimeError that f throws ("" if it throws none).
inline std::string runtime_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const RuntimeError& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace dtrain::test
