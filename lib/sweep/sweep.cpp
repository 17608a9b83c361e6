// Reading the sweep file (toml11, every problem collected with its line),
// expanding it into trials, and checking every trial's config with the config
// library before anything runs.
#include "sweep/sweep.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "config/dtrain_file.h"
#include "config/problems.h"
#include "config/schema.h"
#include "config/toml_doc.h"
#include "core/error.h"
#include "core/file_kind.h"
#include "core/rng.h"

namespace dtrain::sweep {

namespace {

namespace fs = std::filesystem;
using config::Origin;
using config::Problems;
using TomlValue = config::TomlDoc;

constexpr int64_t kMaxTrials = 100000;
const std::vector<std::string> kTopKeys = {"base", "metric", "mode", "trials", "concurrency", "seed", "search",
                                           "set", "launcher", "ranks", "space", "asha", "slurm"};
const std::vector<std::string> kMetrics = {"eval_loss", "loss", "eval_accuracy", "grad_norm"};

// " (did you mean 'x'?)" among `names`.
std::string near(const std::string& word, const std::vector<std::string>& names) {
  std::vector<std::string> best;
  int d_best = 3;
  for (const auto& n : names) {
    const int d = config::edit_distance(word, n);
    if (d >= static_cast<int>(std::max(word.size(), n.size()))) continue;
    if (d < d_best) d_best = d, best.clear();
    if (d == d_best) best.push_back(n);
  }
  return config::did_you_mean(best);
}

std::string found(const TomlValue& v) {
  switch (v.type()) {
    case toml::value_t::boolean: return v.as_boolean() ? "true" : "false";
    case toml::value_t::integer: return fmt::format("an integer {}", v.as_integer());
    case toml::value_t::floating: return "a float " + config::toml_float(v.as_floating());
    case toml::value_t::string: return "a string " + config::toml_string(v.as_string().str);
    case toml::value_t::array: return "an array";
    case toml::value_t::table: return "a table";
    default: return "a date/time";
  }
}

struct Reader {
  std::string name;
  Problems& problems;

  Origin at(const TomlValue& v) const { return Origin::file(name, static_cast<int>(v.location().line())); }
  void bad(const TomlValue& v, const std::string& key, const std::string& what) {
    problems.add(at(v), fmt::format("{}: {}", key, what));
  }
  bool number(const TomlValue& v) const { return v.is_integer() || v.is_floating(); }
  double as_number(const TomlValue& v) const {
    return v.is_integer() ? static_cast<double>(v.as_integer()) : v.as_floating();
  }
  void string(const TomlValue& v, const std::string& key, std::string& out,
              const std::vector<std::string>& choices = {}) {
    if (!v.is_string()) return bad(v, key, "expected a string, got " + found(v));
    const std::string s = v.as_string().str;
    if (!choices.empty() && std::find(choices.begin(), choices.end(), s) == choices.end())
      return bad(v, key, fmt::format("expected one of \"{}\", got \"{}\"{}", fmt::join(choices, "\", \""), s,
                                     near(s, choices)));
    out = s;
  }
  void integer(const TomlValue& v, const std::string& key, int64_t& out, int64_t lo) {
    if (!v.is_integer()) return bad(v, key, "expected an integer, got " + found(v));
    if (v.as_integer() < lo) return bad(v, key, fmt::format("expected an integer >= {}, got {}", lo, v.as_integer()));
    out = v.as_integer();
  }
  void strings(const TomlValue& v, const std::string& key, std::vector<std::string>& out) {
    if (!v.is_array()) return bad(v, key, "expected an array of strings, got " + found(v));
    std::vector<std::string> r;
    for (const auto& e : v.as_array()) {
      if (!e.is_string()) return bad(e, key, "expected an array of strings, got an element " + found(e));
      r.push_back(e.as_string().str);
    }
    out = std::move(r);
  }
};

// A TOML value as the literal --set takes for a key of `kind`, or "" after a problem.
std::string literal(Reader& r, const TomlValue& v, const std::string& label, config::Kind kind) {
  using config::Kind;
  switch (kind) {
    case Kind::kInt:
      if (v.is_integer()) return fmt::to_string(v.as_integer());
      break;
    case Kind::kFloat:
      if (r.number(v)) {
        const double x = r.as_number(v);
        if (std::isfinite(x)) return config::toml_float(x);
      }
      break;
    case Kind::kBool:
      if (v.is_boolean()) return v.as_boolean() ? "true" : "false";
      break;
    case Kind::kString:
      if (v.is_string()) return config::toml_string(v.as_string().str);
      break;
    case Kind::kStrings:  // a path, or a list of them (one per data-parallel replica)
      if (v.is_string()) return config::toml_string(v.as_string().str);
      [[fallthrough]];
    case Kind::kInts:
    case Kind::kFloats: {
      if (!v.is_array()) break;
      const Kind element = kind == Kind::kInts ? Kind::kInt : kind == Kind::kFloats ? Kind::kFloat : Kind::kString;
      std::vector<std::string> parts;
      for (const auto& e : v.as_array()) {
        std::string p = literal(r, e, label, element);
        if (p.empty()) return "";
        parts.push_back(p);
      }
      return fmt::format("[{}]", fmt::join(parts, ", "));
    }
  }
  r.bad(v, label, fmt::format("expected {}, got {}", config::kind_phrase(kind), found(v)));
  return "";
}

void read_axis(Reader& r, const std::string& key, const TomlValue& v, Spec& spec) {
  const std::string label = fmt::format("space.\"{}\"", key);
  const auto dot = key.find('.');
  const config::KeySpec* ks =
      dot == std::string::npos ? nullptr : config::find_key(key.substr(0, dot), key.substr(dot + 1));
  if (!ks) {
    if (dot == std::string::npos && v.is_table() && !v.contains("dist"))
      return r.bad(v, label, fmt::format("a table of keys: write config keys in quotes, \"{}.<key>\" = [...]", key));
    const auto sugg = dot == std::string::npos ? config::suggest_keys("", key)
                                               : config::suggest_keys(key.substr(0, dot), key.substr(dot + 1));
    return r.bad(v, label, "unknown config key" + config::did_you_mean(sugg) + " (dtrain keys lists them)");
  }
  if (key == "log.out_dir" || key == "checkpoint.dir")
    return r.bad(v, label, "the sweep sets each trial's directory itself");
  Axis a;
  a.key = key;
  a.line = static_cast<int>(v.location().line());
  if (v.is_array()) {
    if (v.as_array().empty()) return r.bad(v, label, "an empty list of choices");
    std::set<std::string> seen;
    for (const auto& e : v.as_array()) {
      std::string lit = literal(r, e, label, ks->kind());
      if (lit.empty()) return;
      if (!seen.insert(lit).second) return r.bad(e, label, fmt::format("the choice {} is listed twice", lit));
      a.choices.push_back(lit);
    }
  } else if (v.is_table()) {
    const auto& t = v.as_table();
    for (const auto& [k, x] : t)
      if (k != "dist" && k != "low" && k != "high")
        return r.bad(x, label, fmt::format("unknown distribution key '{}' (expected dist, low, high){}", k,
                                           near(k, {"dist", "low", "high"})));
    if (!t.count("dist")) return r.bad(v, label, "a distribution needs dist = \"uniform\" or \"log-uniform\"");
    r.string(t.at("dist"), label + ".dist", a.dist, {"uniform", "log-uniform"});
    if (a.dist.empty()) return;
    if (ks->kind() != config::Kind::kInt && ks->kind() != config::Kind::kFloat)
      return r.bad(v, label, fmt::format("a distribution needs a numeric key, and {} is {}: give a list of choices",
                                         key, config::kind_phrase(ks->kind())));
    a.integer = ks->kind() == config::Kind::kInt;
    for (const char* bound : {"low", "high"}) {
      if (!t.count(bound)) return r.bad(v, label, fmt::format("the distribution needs {}", bound));
      const TomlValue& b = t.at(bound);
      if (a.integer ? !b.is_integer() : (!r.number(b) || !std::isfinite(r.as_number(b))))
        return r.bad(b, fmt::format("{}.{}", label, bound),
                     fmt::format("expected {}, got {}", a.integer ? "an integer" : "a finite number", found(b)));
      (std::string(bound) == "low" ? a.low : a.high) = r.as_number(b);
    }
    if (!(a.low < a.high))
      return r.bad(v, label, fmt::format("expected low < high, got low = {} and high = {}", config::toml_float(a.low),
                                         config::toml_float(a.high)));
    if (a.dist == "log-uniform" && a.low <= 0)
      return r.bad(v, label, fmt::format("log-uniform needs low > 0, got {}", config::toml_float(a.low)));
  } else {
    return r.bad(v, label,
                 "expected a list of choices or a distribution table { dist = \"log-uniform\", low = ..., high = ... }, "
                 "got " + found(v));
  }
  spec.space.push_back(std::move(a));
}


std::string axis_value(const Axis& a, CounterRng& rng) {
  if (!a.choices.empty()) return a.choices[rng.below(a.choices.size())];
  const double u = rng.uniform();
  if (a.integer) {
    if (a.dist == "uniform") {
      const auto n = static_cast<uint64_t>(a.high - a.low) + 1;
      return fmt::to_string(static_cast<int64_t>(a.low) + static_cast<int64_t>(rng.below(n)));
    }
    // log-uniform over [low - 0.5, high + 0.5) so that the ends are as likely as their neighbours' share
    const double lo = std::log(a.low - 0.5 > 0 ? a.low - 0.5 : a.low), hi = std::log(a.high + 0.5);
    const auto x = static_cast<int64_t>(std::llround(std::exp(lo + u * (hi - lo))));
    return fmt::to_string(std::clamp(x, static_cast<int64_t>(a.low), static_cast<int64_t>(a.high)));
  }
  if (a.dist == "uniform") return config::toml_float(a.low + u * (a.high - a.low));
  return config::toml_float(std::exp(std::log(a.low) + u * (std::log(a.high) - std::log(a.low))));
}

}  // namespace

Spec parse_spec(const std::string& path) {
  Spec s = parse_spec_text(config::read_toml_file(path, "sweep file"), path);
  return s;
}

Spec parse_spec_text(const std::string& text, const std::string& name) {
  const TomlValue doc = config::parse_toml(text, name);
  {  // another kind of dtrain file (a training config, a hardware description): one line, not one per key
    if (const std::string other = config::other_file_kind_of(doc.as_table(), config::FileKind::sweep); !other.empty())
      throw ConfigError(fmt::format("{}: not a sweep file but {}; a sweep file names its config (base = "
                                    "\"config.toml\") and the values to try ([space])",
                                    name, other));
  }
  Problems problems;
  Reader r{name, problems};
  Spec spec;
  spec.path = name;
  bool have_trials = false, have_search = false;
  const TomlValue* space = nullptr;
  for (const auto& [key, v] : doc.as_table()) {
    if (key == "base") {
      r.string(v, key, spec.base);
    } else if (key == "metric") {
      r.string(v, key, spec.metric, kMetrics);
    } else if (key == "mode") {
      r.string(v, key, spec.mode, {"min", "max"});
    } else if (key == "search") {
      have_search = true;
      r.string(v, key, spec.search, {"grid", "random"});
    } else if (key == "trials") {
      have_trials = true;
      r.integer(v, key, spec.trials, 1);
      if (spec.trials > kMaxTrials) r.bad(v, key, fmt::format("at most {} trials", kMaxTrials));
    } else if (key == "concurrency") {
      r.integer(v, key, spec.concurrency, 1);
    } else if (key == "seed") {
      r.integer(v, key, spec.seed, 0);
    } else if (key == "ranks") {
      r.integer(v, key, spec.ranks, 1);
    } else if (key == "set") {
      r.strings(v, key, spec.set);
      for (const auto& s : spec.set)
        if (s.starts_with("log.out_dir=") || s.starts_with("checkpoint.dir="))
          r.bad(v, key, "the sweep sets each trial's directory itself: " + s);
    } else if (key == "launcher") {
      r.strings(v, key, spec.launcher);
    } else if (key == "space") {
      if (!v.is_table()) r.bad(v, key, "expected a table [space], got " + found(v));
      else space = &v;
    } else if (key == "asha") {
      if (!v.is_table()) {
        r.bad(v, key, "expected a table [asha], got " + found(v));
        continue;
      }
      bool rungs = false, min_steps = false;
      for (const auto& [k, x] : v.as_table()) {
        const std::string label = "asha." + k;
        if (k == "rungs") {
          rungs = true;
          if (!x.is_array() || x.as_array().empty()) {
            r.bad(x, label, "expected a non-empty array of steps, got " + found(x));
            continue;
          }
          for (const auto& e : x.as_array()) {
            if (!e.is_integer() || e.as_integer() < 1) {
              r.bad(e, label, "expected steps >= 1, got " + found(e));
              break;
            }
            if (!spec.asha.rungs.empty() && e.as_integer() <= spec.asha.rungs.back()) {
              r.bad(e, label, "expected increasing steps");
              break;
            }
            spec.asha.rungs.push_back(e.as_integer());
          }
        } else if (k == "min_steps") {
          min_steps = true;
          r.integer(x, label, spec.asha.min_steps, 1);
        } else if (k == "reduction") {
          if (!r.number(x) || !(r.as_number(x) > 1) || !std::isfinite(r.as_number(x)))
            r.bad(x, label, "expected a number > 1, got " + found(x));
          else
            spec.asha.reduction = r.as_number(x);
        } else {
          r.bad(x, label, fmt::format("unknown key (expected rungs, min_steps, reduction){}",
                                      near(k, {"rungs", "min_steps", "reduction"})));
        }
      }
      if (rungs == min_steps)
        r.bad(v, "asha", rungs ? "give rungs or min_steps, not both" : "needs rungs = [steps, ...] or min_steps = N");
    } else if (key == "slurm") {
      if (!v.is_table()) {
        r.bad(v, key, "expected a table [slurm], got " + found(v));
        continue;
      }
      for (const auto& [k, x] : v.as_table()) {
        if (k == "options") r.strings(x, "slurm.options", spec.slurm_options);
        else r.bad(x, "slurm." + k, "unknown key (expected options)" + near(k, {"options"}));
      }
    } else {
      r.bad(v, key, "unknown sweep key" + near(key, kTopKeys) +
                        (config::find_key(key.substr(0, key.find('.')), key.substr(key.find('.') + 1))
                             ? fmt::format(" (config keys go in [space] or set = [\"{}=...\"])", key)
                             : ""));
    }
  }
  if (spec.base.empty() && !doc.contains("base")) problems.add(Origin::defaults(name), "base: missing: base = \"config.toml\"");
  if (space) {
    for (const auto& [key, v] : space->as_table()) read_axis(r, key, v, spec);
    if (space->as_table().empty()) problems.add(r.at(*space), "space: empty: give at least one config key to vary");
  } else if (problems.empty()) {
    problems.add(Origin::defaults(name), "space: missing: a [space] table of config keys to vary");
  }
  const bool any_dist = std::any_of(spec.space.begin(), spec.space.end(), [](const Axis& a) { return !a.dist.empty(); });
  if (spec.search.empty()) spec.search = any_dist || have_trials ? "random" : "grid";
  if (spec.search == "grid") {
    if (any_dist)
      problems.add(Origin::file(name, std::find_if(spec.space.begin(), spec.space.end(), [](const Axis& a) {
                                        return !a.dist.empty();
                                      })->line),
                   "search = \"grid\" takes lists of choices only, not distributions");
    if (have_trials && have_search)
      problems.add(Origin::defaults(name), "trials: a grid runs every combination; trials is for search = \"random\"");
    int64_t n = 1;
    for (const Axis& a : spec.space) n = std::min<int64_t>(kMaxTrials + 1, n * static_cast<int64_t>(a.choices.size()));
    if (n > kMaxTrials) problems.add(Origin::defaults(name), fmt::format("space: more than {} combinations", kMaxTrials));
    spec.trials = n;
  } else if (!have_trials) {
    problems.add(Origin::defaults(name), "trials: missing: random search needs trials = N");
  }
  if (!problems.empty()) throw ConfigError(problems.sorted());
  if (!spec.base.empty() && fs::path(spec.base).is_relative())
    spec.base = (fs::path(name).parent_path() / spec.base).lexically_normal().string();
  return spec;
}

std::vector<Trial> make_trials(const Spec& spec) {
  std::vector<Trial> out;
  if (spec.search == "grid") {
    std::vector<size_t> idx(spec.space.size(), 0);
    for (int64_t t = 0; t < spec.trials; ++t) {
      Trial trial{t, {}};
      for (size_t a = 0; a < spec.space.size(); ++a)
        trial.overrides.push_back(spec.space[a].key + "=" + spec.space[a].choices[idx[a]]);
      out.push_back(std::move(trial));
      for (size_t a = spec.space.size(); a-- > 0;) {  // the last axis fastest
        if (++idx[a] < spec.space[a].choices.size()) break;
        idx[a] = 0;
      }
    }
    return out;
  }
  for (int64_t t = 0; t < spec.trials; ++t) {
    CounterRng rng(hash_combine(hash_combine(hash_string("dtrain sweep"), static_cast<uint64_t>(spec.seed)),
                                static_cast<uint64_t>(t)));
    Trial trial{t, {}};
    for (const Axis& a : spec.space) trial.overrides.push_back(a.key + "=" + axis_value(a, rng));
    out.push_back(std::move(trial));
  }
  return out;
}

std::string values_text(const Trial& t) { return fmt::format("{}", fmt::join(t.overrides, " ")); }

std::vector<Config> check_trials(Spec& spec, const std::vector<Trial>& trials, const AutoLayout& auto_layout) {
  std::vector<Config> configs;
  std::error_code ec;
  if (!fs::is_regular_file(spec.base, ec)) {
    const std::string kind = special_file_kind(spec.base);
    throw ConfigError(fmt::format("{}: base: {}: {}", spec.path, spec.base,
                                  kind.empty() ? "no such config file" : kind + ", not a config file"));
  }
  std::vector<std::string> problems;
  std::set<std::string> seen;
  int64_t max_steps = 0, eval_every = -1;
  bool eval_ok = true;
  // What the `set` overrides themselves get wrong (an unknown key, a bad
  // value): said as the sweep file's `set`, not as the first trial's. Taken
  // from the base with `set` alone, and said only where a trial has it too
  // (a [space] value may be what makes another problem go away).
  std::map<std::string, std::string> of_set;  // the problem -> its `set` override
  if (!spec.set.empty()) {
    try {
      (void)load_config(spec.base, spec.set, static_cast<int>(spec.ranks), auto_layout);
    } catch (const ConfigError& e) {
      for (const auto& p : e.problems())
        for (const auto& o : spec.set)
          if (p.starts_with("--set " + o + ": ")) of_set.emplace(p, o);
    }
  }
  auto check = [&](const std::vector<std::string>& overrides, const std::string& what, bool keep) {
    std::vector<std::string> all = spec.set;
    all.insert(all.end(), overrides.begin(), overrides.end());
    try {
      const Config c = load_config(spec.base, all, static_cast<int>(spec.ranks), auto_layout);
      max_steps = std::max(max_steps, c.train.steps);
      if (keep) configs.push_back(c);
      if (spec.metric.starts_with("eval_")) {
        for (int64_t r : spec.asha.rungs) eval_ok &= c.train.eval_every > 0 && r % c.train.eval_every == 0;
        eval_every = c.train.eval_every;
      }
      if (spec.metric == "eval_accuracy" && !c.model.classifier() && seen.insert("acc").second)
        problems.push_back(fmt::format("{}: metric: eval_accuracy is recorded for classifiers (model.type = \"cnn\") "
                                       "only, and {} trains a {}",
                                       spec.path, what, c.model.type));
    } catch (const ConfigError& e) {
      for (const auto& p : e.problems())
        if (seen.insert(p).second)
          problems.push_back(of_set.count(p) ? fmt::format("{}: set: \"{}\"{}", spec.path, of_set.at(p),
                                                           p.substr(("--set " + of_set.at(p)).size()))
                                             : fmt::format("{}: {}: {}", spec.path, what, p));
    }
  };
  for (const Axis& a : spec.space) {  // a distribution's ends, with the first trial's other values
    if (a.dist.empty() || trials.empty()) continue;
    for (double end : {a.low, a.high}) {
      std::vector<std::string> o = trials.front().overrides;
      const std::string lit = a.integer ? fmt::to_string(static_cast<int64_t>(end)) : config::toml_float(end);
      for (auto& s : o)
        if (s.starts_with(a.key + "=")) s = a.key + "=" + lit;
      check(o, fmt::format("space.\"{}\" ({} = {})", a.key, end == a.low ? "low" : "high", lit), false);
    }
  }
  for (const Trial& t : trials) check(t.overrides, fmt::format("trial {} ({})", t.id, values_text(t)), true);
  if (problems.empty() && spec.asha.min_steps > 0) {
    spec.asha.rungs.clear();
    for (double r = static_cast<double>(spec.asha.min_steps); r < static_cast<double>(max_steps); r *= spec.asha.reduction)
      spec.asha.rungs.push_back(static_cast<int64_t>(std::llround(r)));
    for (int64_t r : spec.asha.rungs)
      eval_ok &= !spec.metric.starts_with("eval_") || (eval_every > 0 && r % eval_every == 0);
  }
  if (problems.empty() && !eval_ok)
    problems.push_back(eval_every > 0
                           ? fmt::format("{}: asha: {} is recorded every train.eval_every = {} steps, and the rungs [{}] "
                                         "are not all multiples of it",
                                         spec.path, spec.metric, eval_every, fmt::join(spec.asha.rungs, ", "))
                           : fmt::format("{}: asha: {} is never recorded (train.eval_every = 0), so no rung can "
                                         "compare it: set train.eval_every, or metric = \"loss\"",
                                         spec.path, spec.metric));
  // A rung at or past every trial's last step never stops anything.
  if (problems.empty() && !spec.asha.rungs.empty() && spec.asha.rungs.back() >= max_steps)
    problems.push_back(fmt::format("{}: asha: rung {} is not before the trials' last step (train.steps = {}): "
                                   "rungs must be steps the trials reach and go past",
                                   spec.path, spec.asha.rungs.back(), max_steps));
  if (!problems.empty()) throw ConfigError(problems);
  return configs;
}

}  // namespace dtrain::sweep
