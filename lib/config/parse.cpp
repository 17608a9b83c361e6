// Reading a config: TOML text -> raw values per schema key (from the file,
// then --set overrides) -> typed, range-checked Config fields -> checks
// between keys (validate.cpp). Every problem is collected and thrown at the
// end as one ConfigError, so the user can fix them all in one go.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "config/config.h"
#include "config/dtrain_file.h"
#include "config/schema.h"
#include "config/toml_doc.h"
#include "config/validate.h"
#include "core/error.h"

namespace dtrain {

namespace config {
namespace {

using TomlValue = TomlDoc;

struct Raw {
  TomlValue value;
  Origin origin;
};
using RawValues = std::vector<std::optional<Raw>>;  // one per schema() entry

// "a string \"abc\"", "an integer 5", ...: what the user wrote, for messages.
std::string describe_found(const TomlValue& v) {
  switch (v.type()) {
    case toml::value_t::boolean:
      return v.as_boolean() ? "a boolean true" : "a boolean false";
    case toml::value_t::integer:
      return fmt::format("an integer {}", v.as_integer());
    case toml::value_t::floating:
      return "a float " + toml_float(v.as_floating());
    case toml::value_t::string:
      return "a string " + toml_string(v.as_string().str);
    case toml::value_t::array:
      return "an array";
    case toml::value_t::table:
      return "a table";
    case toml::value_t::empty:
      return "nothing";
    default:
      return "a date/time";
  }
}

bool within(double x, const Constraint& c) {
  if (c.lo && (c.lo->inclusive ? x < c.lo->value : x <= c.lo->value)) return false;
  if (c.hi && (c.hi->inclusive ? x > c.hi->value : x >= c.hi->value)) return false;
  return true;
}

// Reads one scalar of `kind` (an array's element kind for arrays), checking
// type and bounds; `label` names it in messages ("model.channels[1]").
std::optional<Value> read_scalar(const TomlValue& v, Kind kind, const Constraint& c,
                                 const std::string& label, const Origin& origin,
                                 Problems& problems) {
  auto expected = [&](const char* phrase) {
    problems.add(origin, fmt::format("{}: expected {}, got {}", label, phrase, describe_found(v)));
    return std::nullopt;
  };
  auto out_of_range = [&](const char* phrase, const std::string& got) {
    problems.add(origin,
                 fmt::format("{}: expected {} {}, got {}", label, phrase, describe_bounds(c), got));
    return std::nullopt;
  };
  switch (kind) {
    case Kind::kInt: {
      if (!v.is_integer()) return expected("an integer");
      int64_t x = v.as_integer();
      if (!within(static_cast<double>(x), c)) return out_of_range("an integer", fmt::to_string(x));
      return Value(x);
    }
    case Kind::kFloat: {
      if (!v.is_floating() && !v.is_integer()) return expected("a number");
      double x = v.is_integer() ? static_cast<double>(v.as_integer()) : v.as_floating();
      if (!std::isfinite(x)) return expected("a finite number");
      if (!within(x, c)) return out_of_range("a number", toml_float(x));
      return Value(x);
    }
    case Kind::kBool:
      if (!v.is_boolean()) return expected("a boolean (true or false)");
      return Value(v.as_boolean());
    case Kind::kString: {
      if (!v.is_string()) return expected("a string");
      const std::string& s = v.as_string().str;
      if (s.find('\0') != std::string::npos) {  // it would cut a path short without a word
        problems.add(origin, fmt::format("{}: expected a string without NUL characters (\\u0000), got one "
                                         "at offset {}", label, s.find('\0')));
        return std::nullopt;
      }
      if (!c.choices.empty() &&
          std::find(c.choices.begin(), c.choices.end(), s) == c.choices.end()) {
        std::vector<std::string> quoted;
        for (const auto& choice : c.choices) quoted.push_back(toml_string(choice));
        problems.add(origin, fmt::format("{}: expected one of {}, got {}", label,
                                         fmt::join(quoted, ", "), toml_string(s)));
        return std::nullopt;
      }
      return Value(s);
    }
    default:
      throw InternalError("config: read_scalar called for an array kind");
  }
}

// Reads one key's raw value into a typed Value, reporting every problem.
std::optional<Value> read_value(const Raw& raw, const KeySpec& spec, const std::string& name,
                                Problems& problems) {
  const std::string label = spec.name();
  const Kind kind = spec.kind();
  if (kind == Kind::kStrings) {  // a string, or an array of them (at least one)
    if (!raw.value.is_array()) {
      if (!raw.value.is_string()) {
        problems.add(raw.origin, fmt::format("{}: expected {}, got {}", label, kind_phrase(kind),
                                             describe_found(raw.value)));
        return std::nullopt;
      }
      auto x = read_scalar(raw.value, Kind::kString, spec.constraint, label, raw.origin, problems);
      if (!x) return std::nullopt;
      return Value(std::vector<std::string>{std::get<std::string>(*x)});
    }
    const auto& elems = raw.value.as_array();
    if (elems.empty()) {
      problems.add(raw.origin, fmt::format("{}: expected {} with at least one entry, got []", label,
                                           kind_phrase(kind)));
      return std::nullopt;
    }
    std::vector<std::string> out;
    bool all_ok = true;
    for (size_t i = 0; i < elems.size(); ++i) {
      Origin origin = raw.origin.kind == Origin::Kind::kFile
                          ? Origin::file(name, static_cast<int>(elems[i].location().line()))
                          : raw.origin;
      auto x = read_scalar(elems[i], Kind::kString, spec.constraint, fmt::format("{}[{}]", label, i), origin,
                           problems);
      if (x) out.push_back(std::get<std::string>(*x));
      else all_ok = false;
    }
    if (!all_ok) return std::nullopt;
    return Value(std::move(out));
  }
  if (kind != Kind::kInts && kind != Kind::kFloats)
    return read_scalar(raw.value, kind, spec.constraint, label, raw.origin, problems);

  if (!raw.value.is_array()) {
    problems.add(raw.origin, fmt::format("{}: expected {}, got {}", label, kind_phrase(kind),
                                         describe_found(raw.value)));
    return std::nullopt;
  }
  const auto& elems = raw.value.as_array();
  if (elems.empty() && spec.constraint.non_empty) {
    problems.add(raw.origin, fmt::format("{}: expected {} with at least one entry, got []", label,
                                         kind_phrase(kind)));
    return std::nullopt;
  }
  const Kind elem_kind = kind == Kind::kInts ? Kind::kInt : Kind::kFloat;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  bool all_ok = true;
  for (size_t i = 0; i < elems.size(); ++i) {
    // Elements of a multi-line array point at their own line.
    Origin origin = raw.origin.kind == Origin::Kind::kFile
                        ? Origin::file(name, static_cast<int>(elems[i].location().line()))
                        : raw.origin;
    auto x = read_scalar(elems[i], elem_kind, spec.constraint, fmt::format("{}[{}]", label, i),
                         origin, problems);
    if (!x) {
      all_ok = false;
    } else if (elem_kind == Kind::kInt) {
      ints.push_back(std::get<int64_t>(*x));
    } else {
      floats.push_back(std::get<double>(*x));
    }
  }
  if (!all_ok) return std::nullopt;
  return elem_kind == Kind::kInt ? Value(std::move(ints)) : Value(std::move(floats));
}

// A name the user wrote, for a message: at most 64 characters of it.
std::string shown(const std::string& name) { return name.size() > 64 ? name.substr(0, 61) + "..." : name; }

// The file's [section] key = value entries, by schema key.
void collect_file(const TomlValue& doc, const std::string& name, RawValues& raw,
                  Problems& problems) {
  auto line_of = [&](const TomlValue& v) {
    return Origin::file(name, static_cast<int>(v.location().line()));
  };
  for (const auto& [section, table] : doc.as_table()) {
    bool known_section =
        std::find(sections().begin(), sections().end(), section) != sections().end();
    if (!table.is_table()) {
      if (known_section)
        problems.add(line_of(table), fmt::format("{}: expected a table [{}], got {}", section,
                                                 section, describe_found(table)));
      else
        problems.add(line_of(table), fmt::format("unknown key '{}' outside any section{}", shown(section),
                                                 did_you_mean(suggest_keys("", section))));
      continue;
    }
    if (!known_section) {
      problems.add(line_of(table), fmt::format("unknown section '{}'{}", shown(section),
                                               did_you_mean(suggest_sections(section))));
      continue;
    }
    for (const auto& [key, value] : table.as_table()) {
      const KeySpec* spec = find_key(section, key);
      if (!spec) {
        problems.add(line_of(value), fmt::format("unknown key '{}'{}", shown(section + "." + key),
                                                 did_you_mean(suggest_keys(section, key))));
        continue;
      }
      raw[index_of(*spec)] = Raw{value, line_of(value)};
    }
  }
}

// A --set value: TOML if it parses as one value, else the text as a string
// (so that `--set data.train=tokens.bin` needs no quotes).
TomlValue parse_override_value(const std::string& text) {
  std::optional<TomlDoc> value = try_parse_toml_value(text);
  return value ? std::move(*value) : TomlValue(text);  // not TOML: a bare string
}

void apply_overrides(const std::vector<std::string>& overrides, RawValues& raw,
                     Problems& problems) {
  for (size_t i = 0; i < overrides.size(); ++i) {
    const std::string& text = overrides[i];
    const Origin origin = Origin::set(text, static_cast<int>(i));
    const auto eq = text.find('=');
    if (eq == std::string::npos) {
      problems.add(origin, "expected section.key=value");
      continue;
    }
    const std::string name = text.substr(0, eq);
    const auto dot = name.find('.');
    if (dot == std::string::npos) {
      if (std::find(sections().begin(), sections().end(), name) != sections().end())
        problems.add(origin, fmt::format("'{}' is a section: set one of its keys, as {}.KEY=value (`dtrain keys` "
                                         "lists them)",
                                         name, name));
      else
        problems.add(origin, fmt::format("unknown key '{}' outside any section{}", shown(name),
                                         did_you_mean(suggest_keys("", name))));
      continue;
    }
    const std::string section = name.substr(0, dot), key = name.substr(dot + 1);
    if (std::find(sections().begin(), sections().end(), section) == sections().end()) {
      problems.add(origin, fmt::format("unknown section '{}'{}", shown(section),
                                       did_you_mean(suggest_sections(section))));
      continue;
    }
    const KeySpec* spec = find_key(section, key);
    if (!spec) {
      problems.add(origin, fmt::format("unknown key '{}'{}", shown(name),
                                       did_you_mean(suggest_keys(section, key))));
      continue;
    }
    if (auto [line, what] = prescan_toml_value(text.substr(eq + 1)); line > 0) {
      problems.add(origin, fmt::format("{}: {}", name, what));
      continue;
    }
    raw[index_of(*spec)] = Raw{parse_override_value(text.substr(eq + 1)), origin};
  }
}

// Typed values for every key: read where given, the default elsewhere.
void read_values(const RawValues& raw, const std::string& name, Config& c,
                 std::vector<KeyState>& keys, Problems& problems) {
  // model.type decides which other keys may be set, so it is read first.
  const KeySpec& type_spec = *find_key("model", "type");
  std::optional<std::string> model_type = std::get<std::string>(type_spec.default_value);
  if (const auto& r = raw[index_of(type_spec)]) {
    Problems ignored;  // reported in the loop below
    auto v = read_value(*r, type_spec, name, ignored);
    model_type = v ? std::optional(std::get<std::string>(*v)) : std::nullopt;
  }

  for (const KeySpec& spec : schema()) {
    const size_t i = index_of(spec);
    set(spec, c, spec.default_value);
    keys[i].origin = raw[i] ? raw[i]->origin : Origin::defaults(name);
    if (!raw[i]) continue;
    if (model_type && !applies_to(spec.applies, *model_type)) {
      problems.add(raw[i]->origin,
                   fmt::format("{}: applies to model.type \"{}\" only, but model.type is \"{}\"",
                               spec.name(), applies_name(spec.applies), *model_type));
      keys[i].bad = true;
      continue;
    }
    if (auto v = read_value(*raw[i], spec, name, problems))
      set(spec, c, *v);
    else
      keys[i].bad = true;
  }
}

}  // namespace

}  // namespace config

ModelFamily ModelConfig::family() const {
  if (type == "gpt") return ModelFamily::gpt;
  if (type == "cnn") return ModelFamily::cnn;
  throw ConfigError(fmt::format("model.type: unknown model type '{}' (expected gpt or cnn)", type));
}

int64_t train_seq_len(const Config& c) {
  if (!c.model.token_model()) return 0;
  return c.train.seq_len > 0 ? c.train.seq_len : c.model.context_length;
}

Config parse_config(const std::string& toml_text, const std::string& name,
                    const std::vector<std::string>& overrides, int world_size,
                    const AutoLayout& auto_layout) {
  using namespace config;
  DTRAIN_CHECK(world_size >= 1, "world_size = {}", world_size);
  const std::string label = name.empty() ? "<config>" : name;
  const TomlValue doc = parse_toml(toml_text, label);

  {  // another kind of dtrain file (a hardware description, a sweep file): one line, not one per key
    if (const std::string other = other_file_kind_of(doc.as_table(), FileKind::training); !other.empty())
      throw ConfigError(fmt::format("{}: not a training config but {}", label, other));
  }
  Problems problems;
  RawValues raw(schema().size());
  collect_file(doc, label, raw, problems);
  // A resolved config (a run's config.toml) names its checkpoint directory
  // in full, the run directory's default "<out_dir>/checkpoints". Moved to
  // another run directory (--out, --set log.out_dir), the default moves with
  // it: else the new run would save, and prune, among the first run's
  // checkpoints.
  const size_t out_i = index_of(*find_key("log", "out_dir")), ckpt_i = index_of(*find_key("checkpoint", "dir"));
  auto text_of = [&](size_t i) -> std::optional<std::string> {
    if (!raw[i] || !raw[i]->value.is_string()) return std::nullopt;
    return raw[i]->value.as_string().str;
  };
  const std::optional<std::string> file_out = text_of(out_i), file_ckpt = text_of(ckpt_i);
  apply_overrides(overrides, raw, problems);
  const bool out_moved = raw[out_i] && raw[out_i]->origin.kind == Origin::Kind::kSet;
  const bool ckpt_from_file = raw[ckpt_i] && raw[ckpt_i]->origin.kind == Origin::Kind::kFile;
  if (out_moved && ckpt_from_file && file_out && file_ckpt &&
      std::filesystem::path(*file_ckpt).lexically_normal() ==
          (std::filesystem::path(*file_out) / "checkpoints").lexically_normal())
    raw[ckpt_i].reset();

  Config c;
  std::vector<KeyState> keys(schema().size());
  read_values(raw, label, c, keys, problems);
  const std::string stem = std::filesystem::path(name).stem().string();
  validate_and_resolve(c, keys, label, stem.empty() ? "run" : stem, world_size, auto_layout,
                       problems);
  if (!problems.empty()) throw ConfigError(problems.sorted());
  c.source = name;
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                   int world_size, const AutoLayout& auto_layout) {
  return parse_config(config::read_toml_file(path, "config"), path, overrides, world_size, auto_layout);
}

Config default_config(const std::string& model_type) {
  Config c;
  for (const config::KeySpec& spec : config::schema()) config::set(spec, c, spec.default_value);
  c.model.type = model_type;
  return c;
}

}  // namespace dtrain
