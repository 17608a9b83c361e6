// `dtrain inspect`: a checkpoint described for people: where it is, the step
// and data position, the layout that wrote it, its config, and a table of its
// tensors (name, full shape, dtype, stored pieces), optionally after reading
// every piece back and checking its checksum.
#pragma once

#include <string>

namespace dtrain {

// `path`: a checkpoint directory, its checkpoint.h5, or a directory of
// checkpoints (then the newest complete one). Throws CheckpointError or
// InputError. With `verify_key_file` (a public or secret key file), the
// checkpoint must be signed by that key, else CheckpointSignatureError
// naming the file, before anything else of it is read.
std::string describe_checkpoint(const std::string& path, bool verify, const std::string& verify_key_file = "");

}  // namespace dtrain
