// DeviceGroups: the mesh's groups for a run on GPUs, as the trainer takes
// them (Groups), over NCCL or over MPI with host staging, chosen by
// parallel.device_comm:
//   auto  mpi when two ranks share a GPU (host name + PCI bus id, gathered
//         from every rank; NCCL refuses two ranks on one GPU), or when there
//         is one rank (nothing to exchange); else nccl.
//   nccl  refused when ranks share a GPU.
//   mpi   MpiCommunicator staging device tensors through pinned host
//         buffers (staging.h): slow; how every layout is tested on one GPU.
// Either way the groups carry host tensors over MPI too, groups of one
// member are device-aware copies (no library call), and every group is told
// the compute stream (Exec::stream). No NCCL header here.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"
#include "core/exec.h"
#include "dist/mesh.h"
#include "parallel/layout.h"

namespace dtrain {

class NcclRuntime;

struct DeviceGroupsOptions {
  std::string device_comm = "auto";  // parallel.device_comm
  double timeout_s = 300;            // parallel.timeout
  MpiCommOptions mpi;                // the MPI groups' (arrival notices, trace); its timeout is set from timeout_s
  // Receives the one line that says which path was taken and why (every rank
  // calls it; print it on rank 0). None: silent.
  std::function<void(const std::string& line)> log;
};

struct DeviceCommChoice {
  std::string backend;  // "nccl" | "mpi"
  std::string reason;   // "ranks 0 and 1 share the GPU 0000:3b:00.0 of node-a"
};
// setting: parallel.device_comm; gpus[r]: world rank r's "<host> <bus id>".
// Throws ConfigError for nccl when ranks share a GPU (naming them).
DeviceCommChoice choose_device_comm(const std::string& setting, const std::vector<std::string>& gpus);

class DeviceGroups {
 public:
  // Collective over MPI_COMM_WORLD (every rank, same layout and options).
  // device: this rank's GPU (local_rank % GPUs on the node); the groups use
  // the default stream until set_compute_stream (or Communicator::
  // set_compute_stream on each group, which is what a trainer that opens
  // its own stream after getting the groups can do).
  DeviceGroups(const Layout& layout, int device, DeviceGroupsOptions options);
  // The same, then set_compute_stream(exec.stream) (exec.on_cuda()).
  DeviceGroups(const Layout& layout, const Exec& exec, DeviceGroupsOptions options);
  ~DeviceGroups();
  DeviceGroups(const DeviceGroups&) = delete;
  DeviceGroups& operator=(const DeviceGroups&) = delete;

  // What the step loop takes (valid while this object lives).
  const Groups& groups() const { return groups_; }
  const std::string& backend() const { return choice_.backend; }
  const std::string& reason() const { return choice_.reason; }
  // "device communication: nccl (every rank has a GPU of its own)"
  std::string describe() const;
  // The MPI mesh under the groups (the NCCL groups' twins).
  Mesh& mesh() { return *mesh_; }
  // Throws RuntimeError when the NCCL watchdog saw a timeout or an NCCL
  // error (naming the collective, the group, the ranks that did not arrive).
  // Once per step on the main thread; nothing to do on the MPI path.
  void check();
  void set_timeout(double seconds);
  // Tells every group the compute stream (cudaStream_t) of its device tensors.
  void set_compute_stream(void* stream);

 private:
  DeviceCommChoice choice_;
  std::unique_ptr<Mesh> mesh_;
  std::unique_ptr<MpiCommunicator> world_twin_;  // NCCL with one rank: the mesh's world is not MPI's
  std::unique_ptr<NcclRuntime> nccl_;
  std::vector<std::unique_ptr<Communicator>> owned_;
  Groups groups_;
};

// A group of one member for device tensors: all_reduce and broadcast do
// nothing, a gather or scatter that is not in place is a copy enqueued on the
// compute stream; host tensors as make_self_communicator.
std::unique_ptr<Communicator> make_device_self_communicator(const std::string& name, int world_rank);

// The color a rank passes to ncclCommSplit for a mesh group: its MPI color,
// or -1 (NCCL_SPLIT_NOCOLOR) where the group has one member or the rank is
// in none (such groups are device-aware copies, no NCCL communicator).
inline int nccl_color(const MeshSplit& s) { return s.color >= 0 && s.size > 1 ? s.color : -1; }

// For `dtrain --version --verbose`, in every build: "NCCL 2.28.9 (compiled
// 2.28.9)", or "NCCL: none (this build has no CUDA backend)". And the
// refusal of a loaded NCCL whose major version differs from the compiled one
// (RuntimeError, one line; nothing to check without the CUDA backend).
std::string nccl_version_report();
void check_nccl_version();

// "<host> <bus id>" of this rank's GPU (device index `device`).
std::string gpu_identity(int device);

}  // namespace dtrain
