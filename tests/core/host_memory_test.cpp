// host_memory: the machine's RAM, or the smallest limit of this process's
// cgroup and its ancestors (v2 memory.max, v1 memory.limit_in_bytes), the
// hierarchies found through mountinfo: laid out here in a temporary directory.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "core/host_memory.h"

namespace fs = std::filesystem;
using namespace dtrain;

namespace {

void put(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

// A mountinfo line: a cgroup2 hierarchy, or a v1 one with `controllers`, of
// cgroup `root` mounted at `point`.
std::string mount(const fs::path& point, const std::string& root, const std::string& controllers = "") {
  return controllers.empty()
             ? fmt::format("41 31 0:38 {} {} rw,relatime shared:9 - cgroup2 cgroup2 rw\n", root, point.string())
             : fmt::format("35 31 0:32 {} {} rw,relatime - cgroup cgroup rw,{}\n", root, point.string(), controllers);
}

}  // namespace

TEST_CASE("host memory: the RAM, or the smallest cgroup limit up to the mount, v2, hybrid and v1") {
  const fs::path root = fs::temp_directory_path() / ("dtrain_cgroup_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const double ram = 64.0 * (1 << 30), gib = 1 << 30;
  const fs::path v2 = root / "v2";

  // No cgroup file system mounted, or no limit anywhere: the RAM.
  HostMemory m = host_memory(ram, "0::/user.slice/job\n", "");
  CHECK(m.bytes == ram);
  CHECK(m.physical == ram);
  CHECK(m.limit_file.empty());
  m = host_memory(ram, "0::/user.slice/job\n", mount(v2, "/"));
  CHECK(m.bytes == ram);

  // v2: "max" on the job, 16 GiB on its parent, 32 GiB above: the smallest on the way up; a
  // sibling's limit is not read.
  put(v2 / "user.slice/job/memory.max", "max\n");
  put(v2 / "user.slice/memory.max", "17179869184\n");
  put(v2 / "memory.max", "34359738368\n");
  put(v2 / "user.slice/other/memory.max", "1024\n");
  m = host_memory(ram, "0::/user.slice/job\n", mount(v2, "/"));
  CHECK(m.bytes == 16 * gib);
  CHECK(m.limit_file == (v2 / "user.slice/memory.max").string());
  // A container that sees its own cgroup at the mount point ("0::/" in its namespace, or a
  // bind mount whose root is the job): the mount point's file, nothing above it.
  m = host_memory(ram, "0::/\n", mount(v2 / "user.slice/job", "/"));
  CHECK(m.bytes == ram);
  m = host_memory(ram, "0::/user.slice/job\n", mount(v2 / "user.slice", "/user.slice"));
  CHECK(m.bytes == 16 * gib);
  // A path outside the namespace's root ("/.."): only the mount point's own file.
  m = host_memory(ram, "0::/../../elsewhere\n", mount(v2, "/"));
  CHECK(m.bytes == 32 * gib);
  // A limit above the RAM limits nothing; damage is passed over.
  put(v2 / "memory.max", "137438953472\n");
  put(v2 / "user.slice/memory.max", "16G\n");
  m = host_memory(ram, "0::/user.slice/job\n", mount(v2, "/"));
  CHECK(m.bytes == ram);
  CHECK(m.limit_file.empty());

  // Hybrid, as on this development VM: v1 controllers, the memory one mounted with cpu, and
  // the unified hierarchy beside them; escaped spaces in a mount point.
  const fs::path v1 = root / "cpu memory";
  put(v1 / "slurm/uid_0/job_9/memory.limit_in_bytes", "4294967296\n");
  put(v1 / "memory.limit_in_bytes", "9223372036854771712\n");  // v1's "unlimited"
  put(root / "unified/slurm/uid_0/job_9/memory.max", "max\n");
  const std::string info = mount(root / "cpu\\040memory", "/", "cpu,memory") + mount(root / "unified", "/") +
                           "32 31 0:29 / /elsewhere rw - cgroup cgroup rw,pids\n";
  m = host_memory(ram, "5:pids:/slurm/uid_0/job_9\n4:cpu,memory:/slurm/uid_0/job_9\n0::/slurm/uid_0/job_9\n", info);
  CHECK(m.bytes == 4 * gib);
  CHECK(m.limit_file == (v1 / "slurm/uid_0/job_9/memory.limit_in_bytes").string());
  m = host_memory(ram, "4:cpu,memory:/\n", info);
  CHECK(m.bytes == ram);
  fs::remove_all(root);

  // This process, on this machine: at most the RAM, and more than nothing.
  const HostMemory here = host_memory();
  CHECK(here.physical > 0);
  CHECK(here.bytes > 0);
  CHECK(here.bytes <= here.physical);
}
