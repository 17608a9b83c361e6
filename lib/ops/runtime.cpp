#include "ops/runtime.h"

#include <fmt/format.h>

#include "core/device.h"
#include "core/error.h"
#include "core/format_bytes.h"
#if DTRAIN_HAVE_CUDA
#include "kernels/cuda/context.h"
#endif

namespace dtrain::ops {
namespace {

class CpuRuntime final : public Runtime {
 public:
  const Exec& exec() const override { return Exec::cpu(); }
  void sync() const override {}
  std::string describe() const override { return "cpu"; }
};

#if DTRAIN_HAVE_CUDA
class CudaRuntime final : public Runtime {
 public:
  CudaRuntime(int device, bool tf32) : ctx_(device, tf32), exec_(ctx_.exec()) {}
  const Exec& exec() const override { return exec_; }
  void sync() const override { ctx_.sync(); }
  std::string describe() const override {
    gpu::DeviceInfo d = gpu::device_info(ctx_.device());
    return fmt::format("cuda:{} ({}, sm_{}{}, {})", ctx_.device(), d.name, d.sm_major, d.sm_minor,
                       format_bytes(static_cast<double>(d.total_bytes)));
  }
  std::string warnings() const override { return warnings_; }
  std::string warnings_;

 private:
  cuda::Context ctx_;
  Exec exec_;
};
#endif

}  // namespace

std::string device_unavailable(const std::string& device) {
  if (device == "cpu") return {};
  if (device != "cuda") return fmt::format("train.device: '{}': expected cpu or cuda", device);
  if (!gpu::built()) return "train.device: cuda needs the CUDA backend, which this build does not have";
  std::string why;
  if (gpu::device_count(&why) == 0) return fmt::format("train.device: cuda: no usable CUDA device ({})", why);
  return {};
}

std::unique_ptr<Runtime> Runtime::open(const std::string& device, int local_rank, bool tf32) {
  if (std::string why = device_unavailable(device); !why.empty()) throw ConfigError(why);
  if (device == "cpu") return std::make_unique<CpuRuntime>();
#if DTRAIN_HAVE_CUDA
  std::string warn;
  try {
    warn = cuda::check_library_versions();
  } catch (const RuntimeError& e) {
    throw ConfigError(fmt::format("train.device: cuda: {}", e.what()));
  }
  const int n = gpu::device_count(nullptr);
  auto rt = std::make_unique<CudaRuntime>(local_rank % n, tf32);
  rt->warnings_ = warn;
  return rt;
#else
  (void)local_rank;
  (void)tf32;
  throw InternalError("unreachable: device_unavailable let cuda through without the backend");
#endif
}

std::string check_device_libraries() {
#if DTRAIN_HAVE_CUDA
  return cuda::check_library_versions();
#else
  return {};
#endif
}

std::string device_report() {
  std::string s = gpu::runtime_report();
#if DTRAIN_HAVE_CUDA
  s += cuda::library_report();
#endif
  return s;
}

}  // namespace dtrain::ops
