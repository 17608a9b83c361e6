// The memory this process may use on this machine: its RAM, or less where a
// control group caps it (a container, a Slurm job with memory enforcement):
// what `dtrain run` checks a CPU run's ranks against before building the
// model, and what `dtrain profile --write-hardware` records for the node.
// Not the memory free now: ranks that start together would see each other's
// allocations and refuse at random.
#pragma once

#include <string>

namespace dtrain {

struct HostMemory {
  double bytes = 0;        // what this process may use: min(RAM, every limit found)
  double physical = 0;     // the machine's RAM
  std::string limit_file;  // the cgroup file whose limit `bytes` is; "" where the RAM is
};

// This process's: sysconf's RAM, and the memory limits of its cgroup and
// every ancestor of it: memory.max (cgroup v2; "max" is none) and
// memory.limit_in_bytes (v1; a value at or above the RAM is none). Files
// that are absent or do not read as a number are passed over.
HostMemory host_memory();

// The same from `proc_self_cgroup` (the text of /proc/self/cgroup) and the
// cgroup file system mounted at `root` ("/sys/fs/cgroup"): for tests.
HostMemory host_memory(double physical, const std::string& proc_self_cgroup, const std::string& root);

}  // namespace dtrain
