#include "kernels/cuda/context.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <fmt/format.h>

#include "core/device.h"
#include "core/error.h"

namespace dtrain::cuda {
namespace {

// 32 MiB: what cuBLASLt's heuristics want for Hopper's largest kernels.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

std::string lt_version(size_t v) { return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100); }
std::string dnn_version(size_t v) { return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100); }

}  // namespace

Context::Context(int device, bool tf32) : device_(device), tf32_(tf32) {
  std::string why;
  int n = gpu::device_count(&why);
  if (n == 0) throw RuntimeError(fmt::format("cuda:{}: no usable CUDA device ({})", device, why));
  if (device < 0 || device >= n)
    throw RuntimeError(fmt::format("cuda:{}: this machine has {} CUDA device(s)", device, n));
  gpu::set_device(device);
  stream_ = gpu::stream_create();
  cublasLtHandle_t lt = nullptr;
  cublasStatus_t st = cublasLtCreate(&lt);
  if (st != CUBLAS_STATUS_SUCCESS) {
    gpu::stream_destroy(stream_);
    throw RuntimeError(fmt::format("cuda:{}: cublasLtCreate: {}", device, cublasLtGetStatusString(st)));
  }
  lt_ = lt;
  workspace_bytes_ = kWorkspaceBytes;
  workspace_ = gpu::malloc(workspace_bytes_, device);
}

Context::~Context() {
  if (stream_) {
    try {
      gpu::stream_sync(stream_);
    } catch (const Error&) {  // a failed kernel: the handles still go
    }
  }
  if (cudnn_) cudnnDestroy(static_cast<cudnnHandle_t>(cudnn_));
  if (lt_) cublasLtDestroy(static_cast<cublasLtHandle_t>(lt_));
  gpu::free(workspace_);
  gpu::stream_destroy(stream_);
}

void* Context::cudnn() {
  if (!cudnn_) {
    cudnnHandle_t h = nullptr;
    cudnnStatus_t st = cudnnCreate(&h);
    if (st != CUDNN_STATUS_SUCCESS)
      throw RuntimeError(fmt::format("cuda:{}: cudnnCreate: {}", device_, cudnnGetErrorString(st)));
    st = cudnnSetStream(h, static_cast<cudaStream_t>(stream_));
    if (st != CUDNN_STATUS_SUCCESS) {
      cudnnDestroy(h);
      throw RuntimeError(fmt::format("cuda:{}: cudnnSetStream: {}", device_, cudnnGetErrorString(st)));
    }
    cudnn_ = h;
  }
  return cudnn_;
}

void Context::sync() const { gpu::stream_sync(stream_); }

std::string library_report() {
  return fmt::format("cuBLASLt: compiled {}, loaded {}\ncuDNN: compiled {}, loaded {}\n",
                     lt_version(CUBLAS_VERSION), lt_version(cublasLtGetVersion()),
                     dnn_version(CUDNN_VERSION), dnn_version(cudnnGetVersion()));
}

std::string check_library_versions() {
  std::string warn;
  auto one = [&](const char* lib, size_t compiled, size_t loaded) {
    if (compiled / 10000 != loaded / 10000)
      throw RuntimeError(fmt::format("{}: loaded version {} has another major version than the {} dtrain was "
                                     "built with; point LD_LIBRARY_PATH at a {}.x library",
                                     lib, lt_version(loaded), lt_version(compiled), compiled / 10000));
    if (loaded < compiled)
      warn += fmt::format("warning: {} loaded {} is older than the {} dtrain was built with\n", lib,
                          lt_version(loaded), lt_version(compiled));
  };
  // The runtime's code is major * 1000 + minor * 10: as a 10000-based code
  // it compares the same way.
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  one("CUDA runtime", static_cast<size_t>(CUDART_VERSION) * 10, static_cast<size_t>(runtime) * 10);
  one("cuBLASLt", CUBLAS_VERSION, cublasLtGetVersion());
  one("cuDNN", CUDNN_VERSION, cudnnGetVersion());
  return warn;
}

}  // namespace dtrain::cuda
