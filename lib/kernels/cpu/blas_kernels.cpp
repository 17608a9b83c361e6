#include "kernels/cpu/blas_kernels.h"

#include <cstdlib>

// OpenBLAS's DYNAMIC_ARCH entry points, weak so that another BLAS links too.
extern "C" {
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
char* openblas_get_corename(void) __attribute__((weak));
}

namespace dtrain::cpu {

std::string blas_core_name() {
  if (!openblas_get_corename) return "";
  const char* name = openblas_get_corename();
  return name ? name : "";
}

std::string prefer_avx512_blas() {
  const std::string core = blas_core_name();
  if (core.empty() || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) return core;
  if (std::getenv("OPENBLAS_CORETYPE")) return core;  // the user's choice stands
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (!avx512 || core == "SkylakeX" || core == "Cooperlake" || core == "SapphireRapids") return core;
  ::setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  return blas_core_name();
}

}  // namespace dtrain::cpu
