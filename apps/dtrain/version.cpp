// `dtrain --version --verbose`: what this binary was built with and what it
// loaded: the CUDA runtime, driver, cuBLASLt, cuDNN and NCCL (compiled and
// loaded versions, and the GPUs), MPI, HDF5 and the CPU's matrix-product paths.
// A loaded GPU library of another major version is refused in one line
// (version_refusal), after the report that shows it.
#include <hdf5.h>
#include <mpi.h>

#include <string>

#include <fmt/format.h>

#include "commands.h"
#include "dist/device_groups.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/version.h"
#include "ops/ops.h"
#include "ops/runtime.h"

namespace dtrain_cli {

std::string version_report() {
  std::string s = fmt::format("dtrain {}\n", dtrain::program_version());
  s += dtrain::ops::device_report();
  s += dtrain::nccl_version_report() + "\n";
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(mpi, &len);
  std::string mpis(mpi, static_cast<size_t>(len));
  if (auto nl = mpis.find_first_of("\n,"); nl != std::string::npos) mpis.resize(nl);
  s += fmt::format("MPI: {}\n", mpis);
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  s += fmt::format("HDF5: compiled {}.{}.{}, loaded {}.{}.{}\n", H5_VERS_MAJOR, H5_VERS_MINOR, H5_VERS_RELEASE,
                   maj, min, rel);
  s += fmt::format("CPU matrix products: fp32 {}; bf16 {}\n",
                   dtrain::ops::matmul_path(dtrain::Exec::cpu(), dtrain::DType::f32),
                   dtrain::ops::matmul_path(dtrain::Exec::cpu(), dtrain::DType::bf16));
  return s;
}

std::string version_refusal() {
  try {
    (void)dtrain::ops::check_device_libraries();  // the CUDA runtime, cuBLASLt, cuDNN
    dtrain::check_nccl_version();
  } catch (const dtrain::RuntimeError& e) {
    return e.what();
  }
  return {};
}

}  // namespace dtrain_cli
