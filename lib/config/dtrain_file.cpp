#include "config/dtrain_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "config/schema.h"
#include "core/error.h"
#include "core/file_kind.h"

namespace dtrain::config {

namespace {

// The top-level keys that mark each kind (the training config's: its schema's sections).
std::vector<std::string> marks(FileKind kind) {
  switch (kind) {
    case FileKind::training: return sections();
    case FileKind::hardware: return {"device", "node", "intra", "inter", "calibration"};
    case FileKind::sweep: return {"base", "space", "asha"};
  }
  return {};
}

}  // namespace

std::string_view file_kind_name(FileKind kind) {
  switch (kind) {
    case FileKind::training: return "a training config";
    case FileKind::hardware: return "a hardware description";
    case FileKind::sweep: return "a sweep file";
  }
  return "";
}

std::string read_toml_file(const std::string& path, std::string_view what) {
  if (const std::string kind = special_file_kind(path); kind == "a directory")
    throw ConfigError(fmt::format("{}: cannot read {}: it is a directory", path, what));
  else if (!kind.empty())  // a FIFO would block the read
    throw ConfigError(fmt::format("{}: cannot read {}: not a regular file ({})", path, what, kind));
  std::error_code ec;
  if (const auto size = std::filesystem::file_size(path, ec); !ec && size > kMaxTomlFileBytes)
    throw ConfigError(fmt::format("{}: cannot read {}: {} bytes, more than the 1 MiB a {} may have", path, what,
                                  size, what));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot read {}: {}", path, what, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(fmt::format("{}: cannot read {}: read failed", path, what));
  return text.str();
}

std::string other_file_kind(const std::vector<std::string>& keys, FileKind expected) {
  auto found = [&](FileKind kind) {
    std::vector<std::string> out;
    for (const std::string& m : marks(kind))
      if (std::find(keys.begin(), keys.end(), m) != keys.end()) out.push_back(kind == FileKind::sweep ? m : "[" + m + "]");
    return out;
  };
  if (!found(expected).empty()) return "";
  for (FileKind other : {FileKind::training, FileKind::hardware, FileKind::sweep}) {
    if (other == expected) continue;
    if (const std::vector<std::string> has = found(other); !has.empty())
      return fmt::format("{} (it has {})", file_kind_name(other), fmt::join(has, ", "));
  }
  return "";
}

}  // namespace dtrain::config
