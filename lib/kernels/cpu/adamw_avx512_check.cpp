// adamw_avx512_supported (adamw_avx512.h): plain x86-64 code, as the CPU
// checks must not run AVX-512 instructions themselves.
#include "kernels/cpu/adamw_avx512.h"

namespace dtrain::cpu::x86 {

bool adamw_avx512_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
}

}  // namespace dtrain::cpu::x86
