#include "core/error.h"

namespace dtrain {

namespace {
std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += '\n';
    out += l;
  }
  return out;
}
}  // namespace

ConfigError::ConfigError(std::vector<std::string> problems)
    : Error(ErrorKind::kConfig, join_lines(problems)), problems_(std::move(problems)) {}

}  // namespace dtrain
