// A rank's CUDA execution state: its device, its compute stream, the cuBLASLt
// and cuDNN handles and the matrix products' workspace. Made once by the
// trainer (or a test) before plan(), reached by the ops through Exec::cuda,
// alive for the run. No CUDA header here: handles are opaque pointers, cast
// back to their types inside lib/kernels/cuda.
#pragma once

#include <cstddef>
#include <string>

#include "core/exec.h"

namespace dtrain::cuda {

class Context {
 public:
  // Selects the device and creates the stream and the cuBLASLt handle.
  // Throws RuntimeError naming the device and the cause (no GPU, driver).
  // tf32: whether fp32 products may use TF32 tensor cores (train.tf32).
  explicit Context(int device, bool tf32 = false);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int device() const { return device_; }
  bool tf32() const { return tf32_; }
  void* stream() const { return stream_; }  // cudaStream_t
  void* cublaslt() const { return lt_; }    // cublasLtHandle_t
  // cudnnHandle_t on the stream, made at the first call (only the CNN uses it;
  // its layers call this from plan()).
  void* cudnn();
  // The matrix products' workspace (cuBLASLt), shared by every plan that runs
  // on this stream.
  void* workspace() const { return workspace_; }
  size_t workspace_bytes() const { return workspace_bytes_; }

  // The Exec the ops take: this device, this stream, this context.
  Exec exec() { return Exec{Device::cuda(device_), stream_, this}; }
  // Waits for everything queued on the stream.
  void sync() const;

 private:
  int device_ = 0;
  bool tf32_ = false;
  void* stream_ = nullptr;
  void* lt_ = nullptr;
  void* cudnn_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

// The compiled and loaded versions of cuBLASLt and cuDNN, one per line.
std::string library_report();
// Throws RuntimeError when a loaded library's (the CUDA runtime's, cuBLASLt's,
// cuDNN's) major version differs from the one compiled against; returns warnings (one per line, may be empty) when a
// loaded minor version is older than the compiled one.
std::string check_library_versions();

}  // namespace dtrain::cuda
