// Mesh: the job's ranks arranged as data x tensor x pipeline parallelism, and
// the communicator of each group a rank belongs to. Tensor parallelism varies
// fastest (its all-reduces are the most frequent and the largest, so its
// ranks should be the closest ones, as on one node), then data, then pipeline:
//   world rank = tp_rank + tp * (dp_rank + dp * pp_rank).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "core/comm.h"
#include "dist/mpi_communicator.h"
#include "parallel/layout.h"

namespace dtrain {

// The layout arithmetic lives in lib/parallel (no MPI); the mesh adds the
// communicators.
using MeshLayout = Layout;
using MeshCoord = Coord;

// One group of the mesh as a split of the world: the ranks with the same
// color form it, ordered by key; color -1 = this rank is in no such group
// (MPI_UNDEFINED for MPI, NCCL_SPLIT_NOCOLOR for NCCL). `size` = its members.
struct MeshSplit {
  std::string name;  // "world", "dp", "tp", "pp", "embed"
  int color = 0;
  int key = 0;
  int size = 1;
};
// The five splits of the rank at `coord`, in the order every rank makes them
// (world, dp, tp, pp, embed): the MPI mesh and the NCCL groups use the same.
std::vector<MeshSplit> mesh_splits(const MeshLayout& layout, const MeshCoord& coord);

class Mesh {
 public:
  // Collective over base (every rank of it calls it with the same layout):
  // splits base into the groups. base's size must be layout.world_size().
  Mesh(MeshLayout layout, MpiCommOptions options = {}, MPI_Comm base = MPI_COMM_WORLD);
  ~Mesh();
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  const MeshLayout& layout() const { return layout_; }
  MeshCoord coord() const { return coord_; }
  int rank() const { return rank_; }  // in base (the world rank for MPI_COMM_WORLD)

  Communicator& world() { return *world_; }
  Communicator& dp_group() { return *dp_; }        // same tp and pp; member = dp rank
  Communicator& tp_group() { return *tp_; }        // same dp and pp; member = tp rank
  Communicator& pp_group() { return *pp_; }        // same dp and tp; member = pp rank
  // The first and last pipeline stage of this (dp, tp) position, which hold the
  // two copies of the tied embedding (member 0 = first stage). One member on
  // the other stages and when pp == 1.
  Communicator& embed_group() { return *embed_; }

  bool first_stage() const { return coord_.pp == 0; }
  bool last_stage() const { return coord_.pp == layout_.pp - 1; }
  // Pipeline neighbours as pp_group() members; -1 at the ends.
  int prev_stage() const { return coord_.pp - 1; }
  int next_stage() const { return last_stage() ? -1 : coord_.pp + 1; }

  // Applies to every group of the mesh.
  void set_timeout(double seconds);
  void set_trace(CommTrace trace);

  // "mesh dp=2 tp=2 pp=1 over 4 ranks (tp fastest); rank 3 = dp 1, tp 1, pp 0"
  std::string describe() const;

 private:
  std::unique_ptr<Communicator> group(MPI_Comm base, int color, int key, const std::string& name,
                                      const MpiCommOptions& options);

  MeshLayout layout_;
  MeshCoord coord_;
  int rank_ = 0;
  std::unique_ptr<Communicator> world_, dp_, tp_, pp_, embed_;
};

}  // namespace dtrain
