// What the GPT launcher headers of lib/kernels/cuda share: the activation dtypes
// the memory-bound kernels are instantiated for (f32, and bf16 storage with
// fp32 arithmetic). Plain C++: included by the g++ side (lib/ops/cuda) and by
// the .cu files. Every launcher takes raw device pointers, sizes and the
// stream (a cudaStream_t as void*), enqueues its kernels and checks the launch
// (RuntimeError naming the kernel).
#pragma once

#include <cstdint>

namespace dtrain::cuda::gpt {

enum class Act : uint8_t { f32, bf16 };

}  // namespace dtrain::cuda::gpt
