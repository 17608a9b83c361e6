// test_cuda_dist: device communication on a GPU (the MPI-staged path between
// ranks that share one GPU, NCCL at one rank). MPI is up for the whole run,
// as in test_dist; without a usable GPU every rank says why and exits 77
// (ctest: Skipped).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/device.h"
#include "dist/mpi_runtime.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strstr(argv[i], "-list") || std::strstr(argv[i], "-ltc")) listing = true;
  std::string why;
  if (!listing && dtrain::gpu::device_count(&why) == 0) {
    std::printf("test_cuda_dist: skipped: no usable CUDA device (%s)\n", why.c_str());
    return 77;
  }
  dtrain::MpiRuntime mpi(&argc, &argv);
  doctest::Context context(argc, argv);
  if (mpi.world_rank() != 0) context.setOption("minimal", true);
  return context.run();
}
