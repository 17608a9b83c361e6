// Exec: where and how operations run. Every op of lib/ops takes one, so that a
// layer never names a device: on the CPU it carries the device (and checks
// that tensors live there); the CUDA backend adds its stream and library
// handles here, and the ops enqueue on that stream instead of running now.
// One per trainer (or per test), made before plan() and alive for the run.
#pragma once

#include <fmt/format.h>

#include "core/error.h"
#include "core/tensor.h"

namespace dtrain {

namespace cuda {
class Context;  // kernels/cuda/context.h: stream, cuBLASLt/cuDNN handles, workspace
}

struct Exec {
  Device device = Device::cpu();
  void* stream = nullptr;          // cudaStream_t of the compute stream (null on the CPU)
  cuda::Context* cuda = nullptr;   // the CUDA state (null on the CPU)

  bool on_cuda() const { return device.kind == Device::Kind::cuda; }

  static const Exec& cpu() {
    static const Exec e{};  // immutable: no mutable global state
    return e;
  }
  // Throws InternalError unless t lives on this Exec's device: ops refuse a
  // tensor from elsewhere instead of reading another device's memory.
  void check(const Tensor& t, const char* what) const {
    if (t.defined() && !(t.device() == device))
      throw InternalError(fmt::format("{}: tensor on {} given to an op running on {}", what,
                                      t.device().str(), device.str()));
  }
};

}  // namespace dtrain
