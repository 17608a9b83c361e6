// DTRAIN_HOST_DEVICE marks the few functions that both the CPU kernels and the
// CUDA kernels call (bf16 rounding, the counter RNG's mixing, the optimizer
// and GELU element math): nvcc compiles them for host and device, g++ sees
// plain inline functions. One definition, so both backends compute the same bits.
#pragma once

#if defined(__CUDACC__)
#define DTRAIN_HOST_DEVICE __host__ __device__
#else
#define DTRAIN_HOST_DEVICE
#endif
