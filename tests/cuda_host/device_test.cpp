// The CUDA backend's host side, in CI without a GPU: the device query says
// why there is none, and a CUDA run is refused in one line before any work.
#include <doctest/doctest.h>

#include <string>

#include "core/device.h"
#include "core/error.h"
#include "ops/runtime.h"

using namespace dtrain;

TEST_CASE("cuda host: the build has the backend and reports its versions") {
  CHECK(gpu::built());
  std::string r = ops::device_report();
  CHECK(r.find("CUDA runtime: compiled 13.0") != std::string::npos);
  CHECK(r.find("cuBLASLt: compiled 13.") != std::string::npos);
  CHECK(r.find("cuDNN: compiled 9.") != std::string::npos);
  // The libraries loaded here are the ones built against: no refusal.
  // (tests/apps/cuda_cli.sh preloads fakes of other major versions.)
  CHECK_NOTHROW(ops::check_device_libraries());
}

TEST_CASE("cuda host: without a GPU, train.device = cuda is refused in one line naming the cause") {
  std::string why;
  if (gpu::device_count(&why) > 0) {
    MESSAGE("skipped: this machine has a GPU");
    return;
  }
  std::string u = ops::device_unavailable("cuda");
  CHECK(u.rfind("train.device: cuda: no usable CUDA device (cudaGetDeviceCount: ", 0) == 0);
  CHECK(u.find('\n') == std::string::npos);
  CHECK_THROWS_AS(ops::Runtime::open("cuda", 0, false), ConfigError);
  CHECK(ops::device_unavailable("cpu").empty());
  CHECK(ops::device_unavailable("tpu").find("expected cpu or cuda") != std::string::npos);
}
