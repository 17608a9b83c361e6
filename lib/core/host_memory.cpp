#include "core/host_memory.h"

#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

namespace dtrain {

namespace {

namespace fs = std::filesystem;

// The limit in `file`: a whole number of bytes; nullopt for "max", an absent
// file or anything else.
std::optional<double> read_limit(const fs::path& file) {
  std::ifstream f(file);
  std::string text;
  if (!f || !std::getline(f, text)) return std::nullopt;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text.empty() || text.size() > 20) return std::nullopt;
  for (char c : text)
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;  // "max", damage
  return std::stod(text);
}

// The cgroup directory of `path` below `top`, then each ancestor up to `top` itself.
void each_level(const fs::path& top, const std::string& path, const std::function<void(const fs::path&)>& fn) {
  for (fs::path rel = fs::path(path).relative_path().lexically_normal();; rel = rel.parent_path()) {
    const bool at_top = rel.empty() || rel == ".";
    fn(at_top ? top : top / rel);
    if (at_top) return;
  }
}

}  // namespace

HostMemory host_memory(double physical, const std::string& proc_self_cgroup, const std::string& root) {
  HostMemory m;
  m.physical = m.bytes = physical;
  const auto consider = [&](const fs::path& file) {
    const std::optional<double> limit = read_limit(file);
    if (limit && *limit > 0 && *limit < m.bytes) {
      m.bytes = *limit;
      m.limit_file = file.string();
    }
  };
  std::istringstream lines(proc_self_cgroup);
  for (std::string line; std::getline(lines, line);) {
    // "hierarchy-id:controllers:path"; the path may itself hold ':'.
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {  // v2: the unified hierarchy
      // Mounted at root itself, or at root/unified beside v1 controllers (hybrid).
      for (const fs::path& top : {fs::path(root), fs::path(root) / "unified"})
        each_level(top, path, [&](const fs::path& dir) { consider(dir / "memory.max"); });
      continue;
    }
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');)
      if (name == "memory")  // v1
        each_level(fs::path(root) / "memory", path,
                   [&](const fs::path& dir) { consider(dir / "memory.limit_in_bytes"); });
  }
  return m;
}

HostMemory host_memory() {
  const double ram = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  std::ifstream f("/proc/self/cgroup");
  std::stringstream text;
  text << f.rdbuf();
  return host_memory(ram > 0 ? ram : 0, text.str(), "/sys/fs/cgroup");
}

}  // namespace dtrain
