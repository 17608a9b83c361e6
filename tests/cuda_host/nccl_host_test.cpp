// The NCCL communicator's host side in CI (no GPU): version codes, the
// loaded library's report and the major-version check.
#include <doctest/doctest.h>

#include "dist/device_groups.h"
#include "dist/nccl_communicator.h"

using namespace dtrain;

TEST_CASE("nccl: version codes read as major.minor.patch and majors are compared") {
  CHECK(nccl_version_string(22809) == "2.28.9");
  CHECK(nccl_version_string(21805) == "2.18.5");
  CHECK(nccl_version_string(30001) == "3.0.1");
  CHECK(nccl_same_major(22809, 21903));
  CHECK_FALSE(nccl_same_major(22809, 30000));
}

TEST_CASE("nccl: the loaded library is reported beside the compiled one and accepted") {
  // ncclGetVersion needs no GPU.
  const std::string report = nccl_report();
  CHECK(report.rfind("NCCL 2.", 0) == 0);
  CHECK(report.find("(compiled 2.") != std::string::npos);
  CHECK_NOTHROW(nccl_check_version());
}

TEST_CASE("nccl: the report for --version --verbose is the library's in a CUDA build") {
  CHECK(nccl_version_report() == nccl_report());
  CHECK_NOTHROW(check_nccl_version());
}
