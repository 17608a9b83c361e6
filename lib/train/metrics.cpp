#include "train/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_kind.h"

namespace dtrain {

namespace {
std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<int>(c));
      continue;
    }
    out += c;
  }
  return out;
}
}  // namespace

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  // Opened for writing, a FIFO waits for a reader (maybe for ever).
  if (const std::string kind = special_file_kind(path); !kind.empty())
    throw RuntimeError(fmt::format("cannot write '{}': not a regular file ({}); expected the run's metrics file, a "
                                   "regular file", path, kind));
  f_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f_) throw RuntimeError(fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(std::initializer_list<std::pair<const char*, Value>> fields) {
  if (!f_) return;
  std::string line = "{";
  for (const auto& [key, value] : fields) {
    if (line.size() > 1) line += ", ";
    line += fmt::format("\"{}\": ", key);
    if (const auto* i = std::get_if<int64_t>(&value)) {
      line += fmt::format("{}", *i);
    } else if (const auto* d = std::get_if<double>(&value)) {
      line += std::isfinite(*d) ? fmt::format("{}", *d) : std::string("null");
    } else {
      line += "\"" + json_escape(std::get<std::string>(value)) + "\"";
    }
  }
  line += "}\n";
  if (std::fputs(line.c_str(), f_) < 0 || std::fflush(f_) != 0)
    throw RuntimeError(fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
}

}  // namespace dtrain
