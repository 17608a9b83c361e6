#include "train/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_kind.h"

namespace dtrain {

MetricsWriter::MetricsWriter(const std::string& path, bool append,
                             std::function<void(bool made_again, const std::string&)> on_recreated)
    : path_(path), on_recreated_(std::move(on_recreated)) {
  // Opened for writing, a FIFO waits for a reader (maybe for ever).
  if (const std::string kind = special_file_kind(path); !kind.empty())
    throw RuntimeError(fmt::format("cannot write '{}': not a regular file ({}); expected the run's metrics file, a "
                                   "regular file", path, kind));
  f_ = std::fopen(path.c_str(), append ? "a+" : "w+");  // (readable: recreate() copies it back)
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

void MetricsWriter::recreate() {
  namespace fs = std::filesystem;
  // Once: whatever happens, the run goes on (writing to its own file, as
  // before), and the question is not asked again.
  recreate_tried_ = true;
  auto give_up = [&](const std::string& why) {
    if (on_recreated_)
      on_recreated_(false, fmt::format("'{}' was deleted while the run wrote it, and is not made again ({}): the run's "
                                "records from here on are lost with it",
                                path_, why));
  };
  std::error_code ec;
  if (fs::path(path_).has_parent_path()) fs::create_directories(fs::path(path_).parent_path(), ec);
  // Only where nothing is: a new run in the directory (its lock went with the
  // old directory) owns what is there now.
  const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return give_up(errno == EEXIST ? "another file is there now" : fmt::format("{}", std::strerror(errno)));
  std::FILE* g = ::fdopen(fd, "a+");
  if (!g) {
    ::close(fd);
    return give_up(std::strerror(errno));
  }
  std::vector<char> buf(1 << 16);
  int64_t bytes = 0;
  bool copied = true;
  for (ssize_t n; (n = ::pread(fileno(f_), buf.data(), buf.size(), bytes)) > 0; bytes += n)
    if (std::fwrite(buf.data(), 1, static_cast<size_t>(n), g) != static_cast<size_t>(n)) {
      copied = false;
      break;
    }
  if (!copied || std::fflush(g) != 0) {
    const std::string why = std::strerror(errno);
    std::fclose(g);
    ::unlink(path_.c_str());
    return give_up(fmt::format("copying its records failed: {}", why));
  }
  std::fclose(f_);
  f_ = g;
  if (on_recreated_)
    on_recreated_(true, fmt::format("'{}' was deleted while the run wrote it (its directory removed?): made again with "
                              "the {} bytes of records written so far",
                              path_, bytes));
}

void MetricsWriter::write(std::initializer_list<std::pair<const char*, Value>> fields) {
  if (!f_) return;
  struct stat st {};
  if (!recreate_tried_ && ::fstat(fileno(f_), &st) == 0 && st.st_nlink == 0) recreate();  // one fstat per record
  const std::string line = format(fields);
  if (std::fputs(line.c_str(), f_) < 0 || std::fflush(f_) != 0)
    throw RuntimeError(fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
}

}  // namespace dtrain
