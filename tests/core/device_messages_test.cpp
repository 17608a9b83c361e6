// The device runtime's out-of-memory message (core/device.h), built and tested
// without a GPU: the bytes asked for (readable and exact), the free and total
// bytes, and the pointer to `dtrain plan`, in one line.
#include <doctest/doctest.h>

#include <string>

#include "core/device.h"

using namespace dtrain;

TEST_CASE("core: out of device memory names the bytes asked, free and total, and dtrain plan") {
  const size_t gib = size_t{1} << 30;
  const std::string m = gpu::out_of_memory_message(3, 3 * gib / 2, 512 * (size_t{1} << 20), 80 * gib);
  CHECK(m.find("out of memory on cuda:3: asked for 1.5 GiB (1610612736 bytes), 512.0 MiB free of 80.0 GiB;") == 0);
  CHECK(m.find("`dtrain plan`") != std::string::npos);
  CHECK(m.find('\n') == std::string::npos);
  // A tiny request on a full device: whole bytes.
  CHECK(gpu::out_of_memory_message(0, 100, 0, gib).find("asked for 100 B (100 bytes), 0 B free of 1.0 GiB") !=
        std::string::npos);
}
