// Which of OpenBLAS's kernels run our matrix products. Debian's OpenBLAS
// (0.3.21, a DYNAMIC_ARCH build) picks its kernels from the CPU model and
// predates AVX-512 support for AMD Zen 4: on this kind of machine it falls
// back to its AVX2 ("Haswell") sgemm at half the speed its AVX-512
// ("SkylakeX") kernels reach on the same cores (measured on 2 cores: 255 vs
// 485 GFLOP/s for 1024^3, 235 vs 420 for the GPT-2 logits product). The
// library can re-select its kernels at run time; this does that when the CPU
// has the AVX-512 subsets those kernels use.
#pragma once

#include <string>

namespace dtrain::cpu {

// Switches OpenBLAS to its AVX-512 kernels when the CPU supports AVX-512
// F/BW/DQ/VL, the library chose an older kernel set, and the user did not
// choose one (OPENBLAS_CORETYPE). Call once at program start, before any
// matrix product and before threads call BLAS (it changes process state: the
// environment and OpenBLAS's kernel table). Returns the kernel set in use
// ("" when the BLAS is not a DYNAMIC_ARCH OpenBLAS).
std::string prefer_avx512_blas();

// The kernel set in use ("Haswell", "SkylakeX", ...; "" when unknown).
std::string blas_core_name();

}  // namespace dtrain::cpu
