#include "core/version.h"

#include "build_id.h"  // generated at every build (tools/build_id.cmake)

namespace dtrain {

const std::string& program_version() {
  static const std::string v = std::string(DTRAIN_VERSION) + "+" + DTRAIN_BUILD_ID;
  return v;
}

}  // namespace dtrain
