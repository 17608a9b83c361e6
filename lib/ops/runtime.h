// The execution state of a run on its device: for the CPU just an Exec; for a
// GPU the cuda::Context (stream, library handles, workspace) behind it. The
// trainer, the profiler and the tests open one before building a model and
// keep it for the run; layers see only the Exec.
#pragma once

#include <memory>
#include <string>

#include "core/exec.h"

namespace dtrain::ops {

class Runtime {
 public:
  // device: "cpu" or "cuda" (train.device). For cuda, the GPU is
  // local_rank % (GPUs on this machine), so ranks of one node spread over its
  // GPUs. Throws ConfigError naming train.device and the cause (no CUDA
  // backend in this build, no usable GPU, the driver's error) before anything
  // is allocated; a library whose major version differs from the one built
  // against is refused the same way.
  static std::unique_ptr<Runtime> open(const std::string& device, int local_rank, bool tf32);
  virtual ~Runtime() = default;
  virtual const Exec& exec() const = 0;
  // Waits for all work queued on the device.
  virtual void sync() const = 0;
  // "cpu", or "cuda:0 (NVIDIA H200, sm_90, 139.8 GiB)".
  virtual std::string describe() const = 0;
  // Warnings found while opening (e.g. a loaded library older than the
  // headers); empty when none.
  virtual std::string warnings() const { return {}; }
};

// Whether `device` can be used here, without opening it: empty when it can,
// else the one-line reason (for `dtrain validate` and early checks).
std::string device_unavailable(const std::string& device);

// Compiled and loaded versions of the CUDA runtime, driver, cuBLASLt and
// cuDNN (NCCL's come from lib/dist), one per line.
std::string device_report();
// Throws RuntimeError (one line) when a loaded CUDA runtime, cuBLASLt or
// cuDNN has another major version than the one built against; returns the
// warnings of older minor versions (may be empty). Nothing to check in a
// build without the CUDA backend. Runtime::open("cuda") makes the same check.
std::string check_device_libraries();

}  // namespace dtrain::ops
