#include "sweep/record.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dtrain::sweep {

namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

ordered_json to_json(const TrialRecord& t) {
  ordered_json j;
  j["id"] = t.id;
  j["overrides"] = t.overrides;
  j["dir"] = t.dir;
  j["state"] = t.state;
  j["best"] = t.best ? ordered_json(*t.best) : ordered_json(nullptr);
  j["best_step"] = t.best_step;
  j["steps"] = t.steps;
  ordered_json rungs = ordered_json::object();
  for (const auto& [r, v] : t.rungs) rungs[std::to_string(r)] = std::isfinite(v) ? ordered_json(v) : ordered_json(nullptr);
  j["rungs"] = rungs;
  j["stopped_at"] = t.stopped_at;
  j["attempts"] = t.attempts;
  j["exit_code"] = t.exit_code;
  j["note"] = t.note;
  j["pid"] = t.pid;
  j["pid_start"] = t.pid_start;
  j["slurm_job"] = t.slurm_job;
  return j;
}

TrialRecord from_json(const ordered_json& j) {
  TrialRecord t;
  t.id = j.at("id").get<int64_t>();
  t.overrides = j.at("overrides").get<std::vector<std::string>>();
  t.dir = j.at("dir").get<std::string>();
  t.state = j.at("state").get<std::string>();
  if (!j.at("best").is_null()) t.best = j.at("best").get<double>();
  t.best_step = j.at("best_step").get<int64_t>();
  t.steps = j.at("steps").get<int64_t>();
  for (const auto& [r, v] : j.at("rungs").items())
    t.rungs[std::stoll(r)] = v.is_null() ? std::numeric_limits<double>::quiet_NaN() : v.get<double>();
  t.stopped_at = j.at("stopped_at").get<int64_t>();
  t.attempts = j.at("attempts").get<int>();
  t.exit_code = j.at("exit_code").get<int>();
  t.note = j.at("note").get<std::string>();
  t.pid = j.at("pid").get<int64_t>();
  t.pid_start = j.at("pid_start").get<uint64_t>();
  t.slurm_job = j.at("slurm_job").get<std::string>();
  return t;
}

}  // namespace

std::optional<SweepRecord> load_record(const std::string& dir) {
  const fs::path path = fs::path(dir) / "sweep.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  if (!fs::is_regular_file(path, ec)) throw InputError(fmt::format("{}: not a regular file", path.string()));
  std::ifstream in(path);
  try {
    const ordered_json j = ordered_json::parse(in);
    SweepRecord r;
    r.sweep_file = j.at("sweep_file").get<std::string>();
    r.metric = j.at("metric").get<std::string>();
    r.mode = j.at("mode").get<std::string>();
    if (j.contains("base")) r.base = j.at("base").get<std::string>();
    if (j.contains("set")) r.set = j.at("set").get<std::vector<std::string>>();
    for (const auto& t : j.at("trials")) r.trials.push_back(from_json(t));
    return r;
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: not a sweep record dtrain can read ({}); move it away to start the sweep afresh",
                                 path.string(), e.what()));
  }
}

void save_record(const std::string& dir, const SweepRecord& r) {
  ordered_json j;
  j["sweep_file"] = r.sweep_file;
  j["metric"] = r.metric;
  j["mode"] = r.mode;
  if (r.base) j["base"] = *r.base;
  if (r.set) j["set"] = *r.set;
  j["trials"] = ordered_json::array();
  for (const auto& t : r.trials) j["trials"].push_back(to_json(t));
  const fs::path path = fs::path(dir) / "sweep.json", tmp = fs::path(dir) / "sweep.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(1) << '\n';
    out.flush();
    if (!out) throw RuntimeError(fmt::format("{}: cannot write: {}", tmp.string(), std::strerror(errno)));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw RuntimeError(fmt::format("{}: cannot write: {}", path.string(), ec.message()));
}

void MetricsTail::poll() {
  std::error_code ec;
  const auto size = fs::file_size(path_, ec);
  if (ec) return;  // not there yet
  if (size < offset_) {  // trimmed by a resume: read it again
    offset_ = 0;
    partial_.clear();
    points_.clear();
    last_step_ = 0;
  }
  if (size == offset_) return;
  std::ifstream in(path_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string chunk(size - offset_, '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<size_t>(in.gcount()));
  offset_ += chunk.size();
  partial_ += chunk;
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    const auto rec = nlohmann::json::parse(partial_.begin() + static_cast<std::ptrdiff_t>(start),
                                           partial_.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
    if (!rec.is_object() || !rec.contains("step") || !rec["step"].is_number_integer()) continue;
    const int64_t step = rec["step"].get<int64_t>();
    last_step_ = std::max(last_step_, step);
    if (auto it = rec.find(metric_); it != rec.end())
      points_.push_back({step, it->is_number() ? it->get<double>() : std::numeric_limits<double>::quiet_NaN()});
  }
  partial_.erase(0, start);
}

std::optional<MetricPoint> MetricsTail::best(bool maximize) const {
  std::optional<MetricPoint> b;
  for (const auto& p : points_) {
    if (std::isnan(p.value)) continue;
    if (!b || (maximize ? p.value > b->value : p.value < b->value)) b = p;
  }
  return b;
}

std::optional<double> MetricsTail::at_rung(int64_t rung, bool ended) const {
  const bool past = (ended && last_step_ >= rung) || last_step_ > rung ||
                    (!points_.empty() && points_.back().step >= rung);
  if (!past) return std::nullopt;
  std::optional<double> v;
  for (const auto& p : points_)
    if (p.step <= rung) v = p.value;
  return v;
}

}  // namespace dtrain::sweep
