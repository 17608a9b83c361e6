#include "train/metrics.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_kind.h"

namespace dtrain {

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

std::string MetricsWriter::format(std::initializer_list<std::pair<const char*, Value>> fields) {
  nlohmann::ordered_json record = nlohmann::ordered_json::object();
  for (const auto& [key, value] : fields) std::visit([&, k = key](const auto& v) { record[k] = v; }, value);
  // NaN and infinities have no JSON form: nlohmann writes them as null.
  return record.dump() + "\n";
}

void MetricsWriter::write(std::initializer_list<std::pair<const char*, Value>> fields) {
  if (!f_) return;
  const std::string line = format(fields);
  if (std::fputs(line.c_str(), f_) < 0 || std::fflush(f_) != 0)
    throw RuntimeError(fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
}

}  // namespace dtrain
