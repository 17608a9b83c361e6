// Which dtrain this is: the release and the source it was built from.
#pragma once

#include <string>

namespace dtrain {

// "0.1.0+<commit>" (the git commit of the source, "-dirty" when it had
// uncommitted changes; "+unknown" outside a git checkout). Checkpoints record
// it: a resume continues bit for bit only on the build that wrote them.
const std::string& program_version();

}  // namespace dtrain
