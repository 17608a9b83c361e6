// metrics.jsonl: one JSON object per line, flushed as written so a killed run
// keeps every record up to its last step. Numbers are printed in their
// shortest round-trip form, so losses compare bit for bit across runs.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <string>
#include <utility>
#include <variant>

namespace dtrain {

class MetricsWriter {
 public:
  using Value = std::variant<int64_t, double, std::string>;

  MetricsWriter() = default;
  // Truncates the file, or appends to it (creating it if absent) when
  // `append` is set (a resumed run). Throws RuntimeError.
  explicit MetricsWriter(const std::string& path, bool append = false);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void write(std::initializer_list<std::pair<const char*, Value>> fields);

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

}  // namespace dtrain
