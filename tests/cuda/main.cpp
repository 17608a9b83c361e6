// test_cuda: the CUDA backend against the CPU, on a GPU. Without a usable GPU
// it says why and exits 77, which ctest reports as Skipped (not passed, not
// failed). --list-test-cases works without a GPU.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/device.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strstr(argv[i], "-list") || std::strstr(argv[i], "-lt") || std::strstr(argv[i], "-ltc")) listing = true;
  if (!listing) {
    std::string why;
    if (dtrain::gpu::device_count(&why) == 0) {
      std::printf("test_cuda: skipped: no usable CUDA device (%s)\n", why.c_str());
      return 77;
    }
  }
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
