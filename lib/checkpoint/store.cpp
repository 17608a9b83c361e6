#include "checkpoint/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "core/error.h"

namespace dtrain::store {

namespace {
constexpr const char* kPrefix = "step_";

std::string errno_text() { return std::strerror(errno); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void rename_path(const fs::path& from, const fs::path& to, const FileOps& ops) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw RuntimeError(fmt::format("cannot rename '{}' to '{}': {}", from.string(), to.string(),
                                   errno_text()));
  ops.done(fmt::format("rename {} -> {}", from.filename().string(), to.filename().string()));
}

void remove_tree(const fs::path& p, const FileOps& ops) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) throw RuntimeError(fmt::format("cannot delete '{}': {}", p.string(), ec.message()));
  ops.done("delete " + p.filename().string());
}
}  // namespace

std::string step_dir_name(int64_t step) { return fmt::format("{}{:08}", kPrefix, step); }

std::optional<int64_t> parse_step_dir_name(const std::string& name) {
  const size_t n = std::strlen(kPrefix);
  if (name.size() < n + 8 || name.compare(0, n, kPrefix) != 0) return std::nullopt;
  int64_t step = 0;
  for (size_t i = n; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

std::string rank_file_name(int world_rank) { return fmt::format("rank_{:05}.h5", world_rank); }

void create_dir(const fs::path& given, unsigned mode) {
  fs::path dir = given.lexically_normal();
  if (dir.filename().empty() && dir.has_parent_path()) dir = dir.parent_path();  // "runs/x/"
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return;
  if (dir.has_parent_path() && dir.parent_path() != dir) {
    fs::create_directories(dir.parent_path(), ec);
    if (ec) throw RuntimeError(fmt::format("cannot create '{}': {}", dir.parent_path().string(), ec.message()));
  }
  // mkdir with mode 0 first, then chmod: never open to others in between, whatever the umask.
  if (::mkdir(dir.c_str(), 0) != 0) {
    if (errno == EEXIST && fs::is_directory(dir, ec)) return;  // another process made it meanwhile
    throw RuntimeError(fmt::format("cannot create '{}': {}", dir.string(), errno_text()));
  }
  if (::chmod(dir.c_str(), static_cast<mode_t>(mode)) != 0)
    throw RuntimeError(fmt::format("cannot set the permissions of '{}': {}", dir.string(), errno_text()));
}

void sync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw RuntimeError(fmt::format("cannot open '{}' to sync it: {}", p.string(), errno_text()));
  const int rc = ::fsync(fd);
  const std::string err = rc != 0 ? errno_text() : "";
  ::close(fd);
  if (rc != 0) throw RuntimeError(fmt::format("cannot sync '{}': {}", p.string(), err));
}

void write_file_atomic(const fs::path& path, const std::string& text, const FileOps& ops) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    f.flush();
    if (!f) throw RuntimeError(fmt::format("cannot write '{}'", tmp.string()));
  }
  sync_path(tmp);
  ops.done("write " + tmp.filename().string());
  rename_path(tmp, path, ops);
  sync_path(path.parent_path());
  ops.done("sync " + path.parent_path().filename().string());
}

std::vector<Entry> list_complete(const fs::path& root) {
  std::vector<Entry> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const auto step = parse_step_dir_name(e.path().filename().string());
    if (step && e.is_directory(ec)) out.push_back({*step, e.path()});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.step > b.step; });
  return out;
}

std::string read_latest(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_regular_file(root / kLatestFile, ec)) return "";  // absent, or a FIFO that would block
  std::ifstream f(root / kLatestFile);
  std::string name;
  if (f) std::getline(f, name);
  return name;
}

void remove_leftovers(const fs::path& root, const FileOps& ops) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    const bool ours = name.rfind(kPrefix, 0) == 0 && (ends_with(name, ".tmp") || ends_with(name, ".old"));
    if (ours || name == std::string(kLatestFile) + ".tmp" || name == std::string(kRunFile) + ".tmp")
      stale.push_back(e.path());
  }
  for (const auto& p : stale) remove_tree(p, ops);
}

std::string read_run(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_regular_file(root / kRunFile, ec)) return "";  // absent, or a FIFO that would block
  std::ifstream f(root / kRunFile);
  std::string id;
  if (f) std::getline(f, id);
  if (id.empty() || id.size() > 64 || id.find_first_not_of("0123456789abcdef") != std::string::npos) return "";
  return id;
}

void publish(const fs::path& tmp, const fs::path& final_dir, const FileOps& ops, const std::string& run_id) {
  const fs::path root = final_dir.parent_path();
  const fs::path aside = final_dir.string() + ".old";
  std::error_code ec;
  const bool replacing = fs::exists(final_dir, ec);
  if (replacing) {
    if (fs::exists(aside, ec)) remove_tree(aside, ops);
    rename_path(final_dir, aside, ops);
  }
  rename_path(tmp, final_dir, ops);
  sync_path(root);
  ops.done("sync " + root.filename().string());
  if (!run_id.empty() && read_run(root) != run_id) write_file_atomic(root / kRunFile, run_id + "\n", ops);
  write_file_atomic(root / kLatestFile, final_dir.filename().string() + "\n", ops);
  if (replacing) remove_tree(aside, ops);
}

std::vector<std::string> prune(const fs::path& root, int64_t keep, const FileOps& ops) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  const std::string protect = read_latest(root);
  int64_t kept = 0;
  std::vector<Entry> doomed;
  const auto all = list_complete(root);
  // The checkpoint `latest` names always stays, plus the newest others up to `keep` in all.
  for (const auto& e : all)
    if (e.dir.filename() == protect) ++kept;
  for (const auto& e : all) {
    if (e.dir.filename() == protect) continue;
    if (kept < keep) ++kept;
    else doomed.push_back(e);
  }
  for (const auto& e : doomed) {
    const fs::path aside = e.dir.string() + ".old";
    rename_path(e.dir, aside, ops);
    remove_tree(aside, ops);
    removed.push_back(e.dir.filename().string());
  }
  if (!doomed.empty()) {
    sync_path(root);
    ops.done("sync " + root.filename().string());
  }
  return removed;
}

std::vector<std::string> write_path_problems(const std::string& out_dir, const std::string& ckpt_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  const fs::path o(out_dir), c(ckpt_dir);
  // Written as inside: its first components are the run directory's, before any '..' is resolved.
  auto components = [](const fs::path& p) {
    std::vector<fs::path> v;
    for (const auto& part : p)
      if (!part.empty() && part != ".") v.push_back(part);
    return v;
  };
  const auto oc = components(o), cc = components(c);
  const bool written_inside = cc.size() > oc.size() && std::equal(oc.begin(), oc.end(), cc.begin());
  if (written_inside) {
    const fs::path ro = fs::weakly_canonical(fs::absolute(o), ec), rc = fs::weakly_canonical(fs::absolute(c), ec);
    const bool stays = std::mismatch(ro.begin(), ro.end(), rc.begin(), rc.end()).first == ro.end() && ro != rc;
    if (!ec && !stays)
      out.push_back(fmt::format("checkpoint.dir: '{}' is written as inside the run directory '{}' (log.out_dir), "
                                "but '..' or a symbolic link leads it to '{}': dtrain writes only inside the run "
                                "and checkpoint directories; give the real path if that is what you mean",
                                ckpt_dir, out_dir, rc.string()));
  }
  // The files dtrain writes there: a link is refused (it would write through
  // it), and so is anything but a regular file (a FIFO would block the write,
  // a directory fail it), in one line before anything starts.
  auto own_files = [&](const fs::path& dir, const char* key, std::initializer_list<const char*> names) {
    for (const char* name : names) {
      const fs::path p = dir / name;
      const fs::file_status st = fs::symlink_status(p, ec);
      if (fs::is_symlink(st)) {
        out.push_back(fmt::format("{}: '{}' is a symbolic link (to '{}'), which dtrain would write through, out of "
                                  "the directory: remove it",
                                  key, p.string(), fs::read_symlink(p, ec).string()));
      } else if (fs::exists(st) && !fs::is_regular_file(st)) {
        const char* what = fs::is_directory(st) ? "a directory" : fs::is_fifo(st) ? "a FIFO" : fs::is_socket(st) ? "a socket" : "not a regular file";
        out.push_back(fmt::format("{}: '{}' is {}, where dtrain writes a file of its own: remove it", key, p.string(),
                                  what));
      }
    }
  };
  own_files(o, "log.out_dir", {"config.toml", "metrics.jsonl", "loss.png", ".dtrain.lock"});
  own_files(c, "checkpoint.dir", {kLatestFile, kRunFile, ".dtrain.lock", "latest.tmp", "run.tmp"});
  return out;
}

int64_t dir_bytes(const fs::path& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += static_cast<int64_t>(e.file_size(ec));
  return total;
}

std::string keep_earlier_output(const std::string& out_dir) {
  const fs::path out(out_dir);
  std::error_code ec;
  const std::vector<fs::path> files = {"metrics.jsonl", "config.toml", "loss.png"};
  std::vector<fs::path> present;
  for (const fs::path& f : files)
    if (fs::is_regular_file(out / f, ec)) present.push_back(f);
  if (std::none_of(present.begin(), present.end(), [](const fs::path& f) { return f == "metrics.jsonl"; }))
    return "";  // no earlier run's record: a config.toml alone is rewritten as before
  // metrics.1.jsonl, config.1.toml, ...: the first number none of them has.
  auto numbered = [](const fs::path& f, int n) {
    return fs::path(fmt::format("{}.{}{}", f.stem().string(), n, f.extension().string()));
  };
  int n = 1;
  while (std::any_of(files.begin(), files.end(), [&](const fs::path& f) { return fs::exists(out / numbered(f, n), ec); }))
    ++n;
  std::vector<std::string> kept;
  for (const fs::path& f : present) {
    fs::rename(out / f, out / numbered(f, n), ec);
    if (ec)
      throw RuntimeError(fmt::format("log.out_dir: cannot keep the earlier run's '{}' as '{}': {}",
                                             (out / f).string(), numbered(f, n).string(), ec.message()));
    kept.push_back(numbered(f, n).string());
  }
  return fmt::format("log.out_dir '{}' held an earlier run's output (no checkpoints); kept it as {}", out_dir,
                     fmt::join(kept, ", "));
}

}  // namespace dtrain::store
