// DeviceGroups (device_groups.h): the choice between NCCL and the MPI-staged
// path, the groups of each, and the device-aware one-member group.
#include "dist/device_groups.h"

#include <unistd.h>

#include <map>

#include "core/device.h"
#include "dist/mesh_groups.h"
#include "dist/mpi_runtime.h"
#if DTRAIN_HAVE_CUDA
#include "dist/nccl_communicator.h"
#endif

namespace dtrain {

#if DTRAIN_HAVE_CUDA
#else
// Without the CUDA backend there is no NCCL: an empty type for the unique_ptr.
class NcclRuntime {};
#endif

namespace {

class DoneWork : public Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

class DeviceSelfCommunicator : public Communicator {
 public:
  DeviceSelfCommunicator(const std::string& name, int world_rank)
      : host_(make_self_communicator(name, world_rank)) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return host_->name(); }
  int world_rank(int r) const override { return host_->world_rank(r); }

  WorkHandle all_reduce(Tensor t, ReduceOp op) override {
    if (t.device().is_cpu()) return host_->all_reduce(std::move(t), op);
    return done(t.bytes());
  }
  WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op, std::vector<int64_t> counts) override {
    if (in.device().is_cpu() && out.device().is_cpu())
      return host_->reduce_scatter(std::move(in), std::move(out), op, std::move(counts));
    return copy("reduce_scatter", in, out, counts, in.numel());
  }
  WorkHandle all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) override {
    if (in.device().is_cpu() && out.device().is_cpu())
      return host_->all_gather(std::move(in), std::move(out), std::move(counts));
    return copy("all_gather", in, out, counts, out.numel());
  }
  WorkHandle broadcast(Tensor t, int root) override {
    if (t.device().is_cpu()) return host_->broadcast(std::move(t), root);
    DTRAIN_CHECK(root == 0, "broadcast from member {} of the one-member group {}", root, name());
    return done(t.bytes());
  }
  WorkHandle send(Tensor t, int peer, int tag) override { return host_->send(std::move(t), peer, tag); }
  WorkHandle recv(Tensor t, int peer, int tag) override { return host_->recv(std::move(t), peer, tag); }
  WorkHandle barrier() override { return host_->barrier(); }
  void set_compute_stream(void* stream) override { stream_ = stream; }
  void set_timeout(double s) override { host_->set_timeout(s); }
  const CommStats& stats() const override { return stats_; }

 private:
  WorkHandle done(size_t bytes) {
    ++stats_.ops;
    stats_.bytes += static_cast<double>(bytes);
    return std::make_unique<DoneWork>();
  }
  WorkHandle copy(const char* op, const Tensor& in, const Tensor& out,
                  const std::vector<int64_t>& counts, int64_t total) {
    DTRAIN_CHECK(in.device() == out.device(), "{} on group '{}': the input is on {} and the output on {}",
                 op, name(), in.device().str(), out.device().str());
    DTRAIN_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel(),
                 "{} on group '{}' of one member: input and output differ ({} {}, {} {})", op, name(),
                 in.numel(), dtype_name(in.dtype()), out.numel(), dtype_name(out.dtype()));
    DTRAIN_CHECK(counts.empty() || (counts.size() == 1 && counts[0] == total),
                 "{} on group '{}': counts do not describe one member's {} elements", op, name(), total);
    if (in.raw() != out.raw()) gpu::memcpy(out.raw(), in.raw(), in.bytes(), stream_);
    return done(in.bytes());
  }

  std::unique_ptr<Communicator> host_;
  void* stream_ = nullptr;
  CommStats stats_;
};

}  // namespace

std::unique_ptr<Communicator> make_device_self_communicator(const std::string& name, int world_rank) {
  return std::make_unique<DeviceSelfCommunicator>(name, world_rank);
}

std::string nccl_version_report() {
#if DTRAIN_HAVE_CUDA
  return nccl_report();
#else
  return "NCCL: none (this build has no CUDA backend)";
#endif
}

void check_nccl_version() {
#if DTRAIN_HAVE_CUDA
  nccl_check_version();
#endif
}

std::string gpu_identity(int device) {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return fmt::format("{} {}", host, gpu::device_info(device).bus_id);
}

DeviceCommChoice choose_device_comm(const std::string& setting, const std::vector<std::string>& gpus) {
  if (setting != "auto" && setting != "nccl" && setting != "mpi")
    throw ConfigError(fmt::format("parallel.device_comm: expected auto, nccl or mpi, got '{}'", setting));
  // The first two ranks that share a GPU, if any.
  std::map<std::string, int> first;
  std::string shared;
  for (int r = 0; r < static_cast<int>(gpus.size()) && shared.empty(); ++r) {
    auto [it, fresh] = first.emplace(gpus[r], r);
    if (!fresh) {
      const std::string& id = gpus[r];
      const size_t space = id.rfind(' ');
      shared = fmt::format("ranks {} and {} share the GPU {} of {}", it->second, r,
                           space == std::string::npos ? id : id.substr(space + 1),
                           space == std::string::npos ? std::string("this node") : id.substr(0, space));
    }
  }
  if (setting == "mpi") return {"mpi", "parallel.device_comm = mpi"};
  if (setting == "nccl") {
    if (!shared.empty())
      throw ConfigError(fmt::format("parallel.device_comm = nccl, but {}: NCCL refuses two ranks on "
                                    "one GPU; use auto or mpi (host-staged)",
                                    shared));
    return {"nccl", "parallel.device_comm = nccl"};
  }
  if (!shared.empty()) return {"mpi", shared + " (NCCL refuses that)"};
  if (gpus.size() <= 1) return {"mpi", "one rank: nothing to exchange"};
  return {"nccl", "every rank has a GPU of its own"};
}

DeviceGroups::DeviceGroups(const Layout& layout, const Exec& exec, DeviceGroupsOptions options)
    : DeviceGroups(layout, exec.on_cuda() ? exec.device.index : -1, std::move(options)) {
  set_compute_stream(exec.stream);
}

void DeviceGroups::set_compute_stream(void* stream) {
  for (Communicator* c : {groups_.world, groups_.dp, groups_.tp, groups_.pp, groups_.embed})
    c->set_compute_stream(stream);
}

DeviceGroups::DeviceGroups(const Layout& layout, int device, DeviceGroupsOptions options) {
  DTRAIN_CHECK(device >= 0, "DeviceGroups need a GPU (an Exec on the CPU was given)");
  gpu::set_device(device);
  int rank = 0, size = 1;
  mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
  // Every rank's GPU, to see whether two share one.
  constexpr int kLen = 320;
  std::string mine = gpu_identity(device);
  std::vector<char> all(static_cast<size_t>(kLen) * size, 0);
  char buf[kLen] = {};
  mine.copy(buf, kLen - 1);
  mpi_check(MPI_Allgather(buf, kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR, MPI_COMM_WORLD), "MPI_Allgather");
  std::vector<std::string> gpus;
  for (int r = 0; r < size; ++r) gpus.emplace_back(all.data() + static_cast<size_t>(r) * kLen);
  choice_ = choose_device_comm(options.device_comm, gpus);
  if (options.log) options.log(describe());

  options.mpi.timeout_seconds = options.timeout_s;
  mesh_ = std::make_unique<Mesh>(layout, options.mpi);
  groups_ = mesh_groups(*mesh_);
  Communicator** slots[] = {&groups_.world, &groups_.dp, &groups_.tp, &groups_.pp, &groups_.embed};
  const std::vector<MeshSplit> splits = mesh_splits(layout, mesh_->coord());

  if (choice_.backend == "nccl") {
#if DTRAIN_HAVE_CUDA
    MpiCommunicator* world_twin = dynamic_cast<MpiCommunicator*>(&mesh_->world());
    if (!world_twin) {  // one rank: the mesh's world is a one-member group
      world_twin_ = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world", options.mpi);
      world_twin = world_twin_.get();
    }
    nccl_ = std::make_unique<NcclRuntime>(device, *world_twin, options.timeout_s);
#else
    throw RuntimeError("parallel.device_comm: nccl needs the CUDA backend, which this build does not have");
#endif
  }
  for (size_t i = 0; i < splits.size(); ++i) {
    const MeshSplit& s = splits[i];
    const bool shared = nccl_color(s) >= 0;  // the mesh made an MpiCommunicator for it
    auto* twin = dynamic_cast<MpiCommunicator*>(*slots[i]);
    DTRAIN_CHECK(!shared || twin, "mesh group '{}' of {} members is not an MPI group", s.name, s.size);
    std::unique_ptr<Communicator> own;
    // The pipeline's point-to-point goes over NCCL too: the step loop issues
    // its transfers in Megatron's batches (parallel/pipeline.h:
    // pipeline_transfers), one ncclGroupStart/End each, so that NCCL's
    // blocking sends, matched by order on one stream, cannot deadlock.
#if DTRAIN_HAVE_CUDA
    if (nccl_) {
      // Collective over the world: every rank splits every group, in order
      // (one-member groups and non-members pass no color).
      own = nccl_->split(s.name, nccl_color(s), s.key, shared ? *twin : (world_twin_ ? *world_twin_ : dynamic_cast<MpiCommunicator&>(mesh_->world())));
    }
#endif
    if (!shared) own = make_device_self_communicator(s.name, rank);
    if (own) {
      *slots[i] = own.get();
      owned_.push_back(std::move(own));
    }
  }
}

DeviceGroups::~DeviceGroups() = default;

std::string DeviceGroups::describe() const {
  return fmt::format("device communication: {} ({})", choice_.backend == "mpi" ? "mpi, host-staged" : choice_.backend,
                     choice_.reason);
}

void DeviceGroups::check() {
#if DTRAIN_HAVE_CUDA
  if (nccl_) nccl_->check();
#endif
}

void DeviceGroups::set_timeout(double seconds) {
  mesh_->set_timeout(seconds);
#if DTRAIN_HAVE_CUDA
  if (nccl_) nccl_->set_timeout(seconds);
#endif
  for (auto& c : owned_) c->set_timeout(seconds);
}

}  // namespace dtrain
