// metrics.jsonl: one JSON object per line (nlohmann-json, keys in the order
// given), flushed as written so a killed run keeps every record up to its
// last step. Doubles are printed in a form that reads back to the same bits
// (nlohmann's shortest round-trip form: 0.1, 1e-07, 2.0), so losses compare
// bit for bit across runs; a NaN or infinite value (JSON has none) is written
// as null.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <functional>
#include <string>
#include <utility>
#include <variant>

namespace dtrain {

class MetricsWriter {
 public:
  using Value = std::variant<int64_t, double, std::string>;

  MetricsWriter() = default;
  // Truncates the file, or appends to it (creating it if absent) when
  // `append` is set (a resumed run). Throws RuntimeError. The file deleted
  // while the run writes it (its directory removed, say) is made again, its
  // directory too, with every record written so far (read back from the
  // open, unlinked file), and on_recreated called once with a sentence
  // saying so (the caller also writes what else it keeps there); where that
  // cannot be (another file is there now: a new run's), on_recreated says so
  // and the run goes on writing its own, deleted file.
  explicit MetricsWriter(const std::string& path, bool append = false,
                         std::function<void(bool made_again, const std::string&)> on_recreated = {});
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void write(std::initializer_list<std::pair<const char*, Value>> fields);
  // One record as written: a JSON object and a newline.
  static std::string format(std::initializer_list<std::pair<const char*, Value>> fields);

 private:
  void recreate();

  std::FILE* f_ = nullptr;
  std::string path_;
  std::function<void(bool made_again, const std::string&)> on_recreated_;
  bool recreate_tried_ = false;
};

}  // namespace dtrain
