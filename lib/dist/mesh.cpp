// The mesh's layout checks and the MPI_Comm_split of each group.
#include "dist/mesh.h"

#include "dist/mpi_runtime.h"

namespace dtrain {

Mesh::Mesh(MeshLayout layout, MpiCommOptions options, MPI_Comm base) : layout_(layout) {
  int size = 0;
  mpi_check(MPI_Comm_rank(base, &rank_), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(base, &size), "MPI_Comm_size");
  layout_.validate(size);
  coord_ = layout_.coord_of(rank_);
  // Every split is collective over base: every rank makes all of them, in this order.
  std::unique_ptr<Communicator>* out[] = {&world_, &dp_, &tp_, &pp_, &embed_};
  std::vector<MeshSplit> splits = mesh_splits(layout_, coord_);
  for (size_t i = 0; i < splits.size(); ++i) {
    const MeshSplit& s = splits[i];
    *out[i] = group(base, s.color < 0 ? MPI_UNDEFINED : s.color, s.key, s.name, options);
  }
}

std::vector<MeshSplit> mesh_splits(const MeshLayout& layout, const MeshCoord& c) {
  const int dp = layout.dp, tp = layout.tp, pp = layout.pp;
  const bool holds_embedding = pp > 1 && (c.pp == 0 || c.pp == pp - 1);
  return {
      {"world", 0, c.tp + tp * (c.dp + dp * c.pp), dp * tp * pp},
      {"dp", c.tp + tp * c.pp, c.dp, dp},
      {"tp", c.dp + dp * c.pp, c.tp, tp},
      {"pp", c.tp + tp * c.dp, c.pp, pp},
      {"embed", holds_embedding ? c.tp + tp * c.dp : -1, c.pp, holds_embedding ? 2 : 1},
  };
}

Mesh::~Mesh() = default;

std::unique_ptr<Communicator> Mesh::group(MPI_Comm base, int color, int key,
                                          const std::string& name, const MpiCommOptions& options) {
  // Split even for groups that will have one member: the split is collective.
  MPI_Comm comm;
  mpi_check(MPI_Comm_split(base, color, key, &comm), "MPI_Comm_split");
  int size = 1;
  if (comm != MPI_COMM_NULL) mpi_check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  if (size > 1) return MpiCommunicator::adopt(comm, name, options);
  if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  int world_rank = 0;
  mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank), "MPI_Comm_rank");
  return make_self_communicator(name, world_rank);
}

void Mesh::set_timeout(double seconds) {
  for (Communicator* g : {world_.get(), dp_.get(), tp_.get(), pp_.get(), embed_.get()})
    g->set_timeout(seconds);
}

void Mesh::set_trace(CommTrace trace) {
  for (Communicator* g : {world_.get(), dp_.get(), tp_.get(), pp_.get(), embed_.get()})
    if (auto* m = dynamic_cast<MpiCommunicator*>(g)) m->set_trace(trace);
}

std::string Mesh::describe() const {
  return fmt::format("mesh {} over {} ranks (tp fastest, then dp, then pp); rank {} = dp {}, tp {}, pp {}",
                     layout_.str(), layout_.world_size(), rank_, coord_.dp, coord_.tp, coord_.pp);
}

}  // namespace dtrain
