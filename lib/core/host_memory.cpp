#include "core/host_memory.h"

#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

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

// mountinfo escapes a path's space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isdigit(static_cast<unsigned char>(s[i + 2])) && std::isdigit(static_cast<unsigned char>(s[i + 3]))) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  return out;
}

// A mounted cgroup hierarchy that holds memory limits.
struct Mount {
  bool v2 = false;
  std::string root;   // the cgroup the mount shows at its mount point ("/" unless bind-mounted or namespaced)
  fs::path point;     // where it is mounted
};

std::vector<Mount> memory_mounts(const std::string& mountinfo) {
  std::vector<Mount> out;
  std::istringstream lines(mountinfo);
  for (std::string line; std::getline(lines, line);) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    std::istringstream f(line);
    std::vector<std::string> w;
    for (std::string x; f >> x;) w.push_back(x);
    size_t dash = 6;
    while (dash < w.size() && w[dash] != "-") ++dash;
    if (w.size() < 5 || dash + 1 >= w.size()) continue;
    const std::string& type = w[dash + 1];
    const std::string super = dash + 3 < w.size() ? w[dash + 3] : "";
    bool memory = false;
    std::istringstream opts(super);
    for (std::string o; std::getline(opts, o, ',');) memory = memory || o == "memory";
    if (type == "cgroup2" || (type == "cgroup" && memory))
      out.push_back(Mount{type == "cgroup2", unescape(w[3]), fs::path(unescape(w[4]))});
  }
  return out;
}

}  // namespace

HostMemory host_memory(double physical, const std::string& proc_self_cgroup, const std::string& mountinfo) {
  HostMemory m;
  m.physical = m.bytes = physical;
  const auto consider = [&](const fs::path& file) {
    const std::optional<double> limit = read_limit(file);
    if (limit && *limit > 0 && *limit < m.bytes) {
      m.bytes = *limit;
      m.limit_file = file.string();
    }
  };
  const std::vector<Mount> mounts = memory_mounts(mountinfo);
  std::istringstream lines(proc_self_cgroup);
  for (std::string line; std::getline(lines, line);) {
    // "hierarchy-id:controllers:path"; the path may itself hold ':'.
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const fs::path path(line.substr(b + 1));  // not normalised: a leading "/.." must stay
    const bool v2 = line.compare(0, a, "0") == 0 && controllers.empty();
    bool memory = false;
    std::istringstream names(controllers);
    for (std::string n; std::getline(names, n, ',');) memory = memory || n == "memory";
    if (!v2 && !memory) continue;
    for (const Mount& mount : mounts) {
      if (mount.v2 != v2) continue;
      // The path below the mount's root; outside it (a cgroup namespace's
      // "/.."), only what the mount shows.
      fs::path rel = path.lexically_relative(fs::path(mount.root).lexically_normal());
      if (rel.empty() || *rel.begin() == "..") rel = ".";
      const char* file = v2 ? "memory.max" : "memory.limit_in_bytes";
      for (;; rel = rel.parent_path()) {
        const bool top = rel.empty() || rel == ".";
        consider((top ? mount.point : mount.point / rel) / file);
        if (top) break;
      }
    }
  }
  return m;
}

HostMemory host_memory() {
  const double ram = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  const auto slurp = [](const char* file) {
    std::ifstream f(file);
    std::stringstream text;
    text << f.rdbuf();
    return text.str();
  };
  return host_memory(ram > 0 ? ram : 0, slurp("/proc/self/cgroup"), slurp("/proc/self/mountinfo"));
}

}  // namespace dtrain
