// HDF5 trusts a file's metadata: on some damaged files its parser crashes
// (a segmentation fault, glibc's "buffer overflow detected" abort) instead of
// returning an error. A checkpoint's manifest vouches for its bytes before
// HDF5 opens them (manifest.h); files no manifest vouches for (format-1
// checkpoints, written before manifests) are parsed first in a child
// process, which a crash or a hang there ends instead of dtrain.
#pragma once

#include <string>
#include <vector>

namespace dtrain::h5 {

struct ProbeResult {
  std::string file;  // the file being parsed when the child died ("" if it finished)
  std::string what;  // how it died: "a segmentation fault (signal 11)", ...; "" if it finished
};

// Opens each of `paths` with HDF5 in a child process and parses all of its
// metadata: every object, attribute (read) and dataspace, and every
// virtual dataset's mappings; no dataset's data. A file HDF5 refuses with an
// error is passed over (the caller's own read reports it). The child is
// killed after `timeout_s` seconds.
ProbeResult probe_in_child(const std::vector<std::string>& paths, double timeout_s);

}  // namespace dtrain::h5
