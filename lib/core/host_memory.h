// The memory this process may use on this machine: its RAM, or less where a
// control group caps it (a container, a Slurm job with memory enforcement):
// what `dtrain run` checks a CPU run's ranks against before building the
// model, and what `dtrain profile --write-hardware` records for the node (so
// a file written inside a small allocation plans for that allocation).
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

// This process's: sysconf's RAM, and the memory limits of its cgroup and of
// every ancestor visible in the mounted hierarchy (up to the mount's root: a
// container's own cgroup): memory.max (cgroup v2; "max" is none) and
// memory.limit_in_bytes (v1, the hierarchy mounted with the memory
// controller; a value at or above the RAM is none). The hierarchies are
// found in /proc/self/mountinfo, and a cgroup path is taken relative to its
// mount's root. Files that are absent or do not read as a number, and paths
// outside the mount (a cgroup namespace's "/.."), are passed over.
HostMemory host_memory();

// The same from the texts of /proc/self/cgroup and /proc/self/mountinfo: for tests.
HostMemory host_memory(double physical, const std::string& proc_self_cgroup, const std::string& mountinfo);

}  // namespace dtrain
