// Host staging for device tensors on the MPI path: Debian's Open MPI is not
// CUDA-aware and NCCL refuses two ranks on one GPU, so on a one-GPU machine
// the ranks of a layout talk through MPI with every device tensor copied to
// page-locked host memory before the operation and back after it. Slow, and
// the only way to test multi-rank layouts on one GPU.
//
// The parts: a StagingCopier moves bytes between a device tensor and a host
// one (the CUDA one orders the copy after the compute stream's work; tests
// inject a fake that runs without a GPU); a StagingPool keeps the pinned
// buffers, allocated on first need and reused, so a steady-state step
// allocates nothing; a StagedWork copies the results back when the MPI
// operation completes. MpiCommunicator (mpi_communicator.cpp) builds each
// staged operation from these.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"

namespace dtrain {

class StagingCopier {
 public:
  virtual ~StagingCopier() = default;
  // True when t must go through host staging (the CUDA copier: t is on a GPU).
  virtual bool stages(const Tensor& t) const { return t.defined() && !t.device().is_cpu(); }
  // host <- device, after the work already enqueued on the compute stream;
  // complete on return.
  virtual void to_host(const Tensor& host, const Tensor& device) = 0;
  // device <- host; complete on return (the host buffer is reused after).
  virtual void to_device(const Tensor& device, const Tensor& host) = 0;
};

// gpu::memcpy on `stream` (the compute stream; null = the default stream, then
// the whole device is synchronised first) and a stream sync. Throws
// RuntimeError naming why when this build or machine has no usable GPU.
std::shared_ptr<StagingCopier> cuda_staging_copier(void* stream);

// Page-locked host buffers by dtype, reused: take() hands out a buffer of at
// least n elements (a new one, of a power-of-two capacity, only when none is
// free), give_back() returns it, forget() drops it for good (an operation
// abandoned while MPI may still write into it keeps its own reference).
class StagingPool {
 public:
  // How a buffer is made: default Tensor::pinned (tests pass Tensor::empty).
  using Allocate = std::function<Tensor(int64_t elements, DType dtype)>;
  explicit StagingPool(Allocate allocate = {});

  struct Lease {
    int slot = -1;
    Tensor host;  // n elements of the slot's buffer
  };
  Lease take(DType dtype, int64_t n);
  void give_back(int slot);
  void forget(int slot);

  int64_t allocations() const { return allocations_; }  // buffers made so far
  size_t bytes() const;                                  // held now
  int busy() const;

 private:
  struct Slot {
    Tensor buffer;  // undefined = free slot number
    bool busy = false;
  };
  Allocate allocate_;
  std::vector<Slot> slots_;
  int64_t allocations_ = 0;
};

// The capacity (elements) a new staging buffer gets for n elements: the next
// power of two, at least 4096.
int64_t staging_capacity(int64_t n);

// An operation on staged copies: waits for `inner` (the MPI operation on the
// host buffers), then copies each `back` pair host -> device and returns the
// leases to the pool. Dropped before completion, it forgets the leases.
class StagedWork : public Work {
 public:
  struct Back {
    Tensor device, host;
  };
  StagedWork(WorkHandle inner, std::vector<Back> back, std::shared_ptr<StagingCopier> copier,
             std::shared_ptr<StagingPool> pool, std::vector<int> slots);
  ~StagedWork() override;
  void wait() override;
  bool test() override;

 private:
  void finish();

  WorkHandle inner_;
  std::vector<Back> back_;
  std::shared_ptr<StagingCopier> copier_;
  std::shared_ptr<StagingPool> pool_;
  std::vector<int> slots_;
  bool done_ = false;
};

}  // namespace dtrain
