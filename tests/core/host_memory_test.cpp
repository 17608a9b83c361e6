// host_memory: the machine's RAM, or the smallest limit of this process's
// cgroup and its ancestors (v2 memory.max, v1 memory.limit_in_bytes), read
// from a cgroup file system laid out in a temporary directory.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/host_memory.h"

namespace fs = std::filesystem;
using namespace dtrain;

namespace {

void put(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

}  // namespace

TEST_CASE("host memory: the RAM, or the smallest cgroup limit on the way up, v2, hybrid and v1") {
  const fs::path root = fs::temp_directory_path() / ("dtrain_cgroup_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const double ram = 64.0 * (1 << 30), gib = 1 << 30;

  // No cgroup file system, or no limit anywhere: the RAM.
  HostMemory m = host_memory(ram, "0::/user.slice/job\n", root.string());
  CHECK(m.bytes == ram);
  CHECK(m.physical == ram);
  CHECK(m.limit_file.empty());

  // v2: "max" on the job, 16 GiB on its parent, 32 GiB above: the smallest on the way up.
  put(root / "user.slice/job/memory.max", "max\n");
  put(root / "user.slice/memory.max", "17179869184\n");
  put(root / "memory.max", "34359738368\n");
  m = host_memory(ram, "0::/user.slice/job\n", root.string());
  CHECK(m.bytes == 16 * gib);
  CHECK(m.limit_file == (root / "user.slice/memory.max").string());
  // A container whose cgroup is the namespace's root ("0::/"): the root's own file.
  m = host_memory(ram, "0::/\n", root.string());
  CHECK(m.bytes == 32 * gib);
  // A limit above the RAM limits nothing; damage is passed over.
  put(root / "memory.max", "137438953472\n");
  put(root / "user.slice/memory.max", "16G\n");
  m = host_memory(ram, "0::/user.slice/job\n", root.string());
  CHECK(m.bytes == ram);
  CHECK(m.limit_file.empty());
  fs::remove_all(root);

  // Hybrid: v1 controllers beside the unified hierarchy at root/unified.
  put(root / "unified/slurm/uid_0/job_7/memory.max", "8589934592");
  m = host_memory(ram, "12:pids:/slurm\n0::/slurm/uid_0/job_7\n", root.string());
  CHECK(m.bytes == 8 * gib);

  // v1 (this development VM's kind): the memory controller's line, its unlimited value
  // (PAGE_COUNTER_MAX) and a Slurm job's limit; other controllers' lines are not read.
  fs::remove_all(root);
  put(root / "memory/memory.limit_in_bytes", "9223372036854771712\n");
  put(root / "memory/slurm/uid_0/job_9/memory.limit_in_bytes", "4294967296\n");
  put(root / "cpu,cpuacct/slurm/uid_0/job_9/memory.limit_in_bytes", "1024\n");
  m = host_memory(ram, "5:cpu,cpuacct:/slurm/uid_0/job_9\n4:memory:/slurm/uid_0/job_9\n1:name=systemd:/\n",
                  root.string());
  CHECK(m.bytes == 4 * gib);
  CHECK(m.limit_file == (root / "memory/slurm/uid_0/job_9/memory.limit_in_bytes").string());
  m = host_memory(ram, "4:memory:/\n", root.string());
  CHECK(m.bytes == ram);
  fs::remove_all(root);

  // This process, on this machine: at most the RAM, and more than nothing.
  const HostMemory here = host_memory();
  CHECK(here.physical > 0);
  CHECK(here.bytes > 0);
  CHECK(here.bytes <= here.physical);
}
