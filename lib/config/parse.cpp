// Reading a config: TOML text -> raw values per schema key (from the file,
// then --set overrides) -> typed, range-checked Config fields -> checks
// between keys (validate.cpp). Every problem is collected and thrown at the
// end as one ConfigError, so the user can fix them all in one go.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

#include <toml.hpp>

#include "config/config.h"
#include "config/dtrain_file.h"
#include "config/schema.h"
#include "config/validate.h"
#include "core/error.h"

namespace dtrain {

namespace config {
namespace {

// std::map keeps keys sorted, so problems come out in a fixed order.
using TomlValue = toml::basic_value<toml::discard_comments, std::map, std::vector>;

struct Raw {
  TomlValue value;
  Origin origin;
};
using RawValues = std::vector<std::optional<Raw>>;  // one per schema() entry

// What the TOML parser cannot be trusted with, found before it runs: nesting
// deeper than kMaxDepth (its recursive descent would overflow the stack a few
// thousand levels down) and decimal integers outside int64 (it would clamp
// them silently to the nearest end). A scan of the text that skips comments
// and strings; returns the 1-based line and the problem, or line 0.
constexpr int kMaxDepth = 32;

// The line of the first byte that is not part of valid UTF-8 (TOML files are
// UTF-8, and the parser read past its buffer on some invalid sequences), or 0.
std::pair<int, unsigned> bad_utf8(const std::string& t) {
  int line = 1;
  for (size_t i = 0; i < t.size(); ++i) {
    const auto c = static_cast<unsigned char>(t[i]);
    if (c == '\n') ++line;
    if (c < 0x80) continue;
    int more = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) more = 1;
    else if (c >= 0xE0 && c <= 0xEF) more = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) more = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return {line, c};
    for (int k = 1; k <= more; ++k) {
      const auto n = i + k < t.size() ? static_cast<unsigned char>(t[i + k]) : 0;
      if (k == 1 ? (n < lo || n > hi) : (n < 0x80 || n > 0xBF)) return {line, c};
    }
    i += more;
  }
  return {0, 0};
}

// The parser's time grows with a line's length times its tokens, and with a
// dotted key's parts squared: a 1 MiB file of long lines or deep keys took
// seconds to minutes. No dtrain file needs either.
constexpr size_t kMaxLineBytes = 4096;
constexpr int kMaxKeyParts = 32;

// `value`: `t` is one --set value, not a file.
std::pair<int, std::string> prescan(const std::string& t, bool value = false) {
  if (auto [line, byte] = bad_utf8(t); line > 0)
    return {line, fmt::format("not valid UTF-8 (a sequence starting with byte 0x{:02X})", byte)};
  {
    int line = 1;
    for (size_t start = 0; start < t.size(); ++line) {
      const size_t end = std::min(t.find('\n', start), t.size());
      if (end - start > kMaxLineBytes)
        return {line, fmt::format("a {} of {} bytes, more than the {} a {} may have", value ? "value" : "line",
                                  end - start, kMaxLineBytes, value ? "--set value" : "line")};
      start = end + 1;
    }
  }
  int line = 1, depth = 0;
  // Dots in the current run of key-like text: bare-key characters, dots,
  // blanks and quoted parts ("a"."b"); anything else ends the run.
  int dots = 0;
  auto starts = [&](size_t i, const char* w) { return t.compare(i, std::strlen(w), w) == 0; };
  for (size_t i = 0; i < t.size(); ++i) {
    const char ch = t[i];
    const bool key_like = std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.' ||
                          ch == ' ' || ch == '\t' || ch == '"' || ch == '\'';
    if (!key_like) dots = 0;
    if (ch == '.' && ++dots >= kMaxKeyParts)
      return {line, fmt::format("a dotted key of more than {} parts", kMaxKeyParts)};
    if (ch == '\n') {
      ++line;
    } else if (ch == '#') {
      while (i + 1 < t.size() && t[i + 1] != '\n') ++i;
    } else if (starts(i, "\"\"\"") || starts(i, "'''")) {
      const char q = ch;
      const std::string close(3, q);
      for (i += 3; i < t.size() && !starts(i, close.c_str()); ++i) {
        if (q == '"' && t[i] == '\\' && i + 1 < t.size()) ++i;  // an escaped character (or line end)
        if (t[i] == '\n') ++line;
      }
      if (i < t.size()) i += 2;  // the last closing quote
      while (i + 1 < t.size() && t[i + 1] == q) ++i;  // quotes just before the closing ones
    } else if (ch == '"' || ch == '\'') {
      for (++i; i < t.size() && t[i] != ch && t[i] != '\n'; ++i)
        if (ch == '"' && t[i] == '\\') ++i;
      if (i < t.size() && t[i] == '\n') ++line;
    } else if (ch == '[' || ch == '{') {
      if (++depth > kMaxDepth)
        return {line, fmt::format("arrays or inline tables nested more than {} deep", kMaxDepth)};
    } else if (ch == ']' || ch == '}') {
      depth = std::max(0, depth - 1);
    } else if (ch >= '0' && ch <= '9') {
      // A run of digits (and '_'), part of a decimal integer unless a float's
      // '.', exponent or a date or time is around it.
      const size_t b = i;
      std::string digits;
      while (i < t.size() && ((t[i] >= '0' && t[i] <= '9') || t[i] == '_')) {
        if (t[i] != '_') digits += t[i];
        ++i;
      }
      const char after = i < t.size() ? t[i] : ' ';
      char before = b > 0 ? t[b - 1] : ' ';
      const bool negative = before == '-';
      if (before == '+' || before == '-') before = b > 1 ? t[b - 2] : ' ';  // a sign starting the text: a --set value
      const bool starts_value = before == ' ' || before == '=' || before == '[' || before == ',' ||
                                before == '\t' || before == '\n' || before == '{';
      const bool part = std::strchr(".eExob:-TZ", after) != nullptr || !starts_value;
      if (starts_value && (after == '.' || after == 'e' || after == 'E')) {
        // A float: one that overflows a double the parser would read as the
        // largest finite one (1e400 as 1.8e308), silently.
        size_t j = i;
        while (j < t.size() && (std::isdigit(static_cast<unsigned char>(t[j])) || std::strchr("_.eE+-", t[j]) != nullptr))
          ++j;
        std::string text = t.substr(b, j - b);
        std::erase(text, '_');
        char* end = nullptr;
        const double x = std::strtod(text.c_str(), &end);
        if (end == text.c_str() + text.size() && std::isinf(x))
          return {line, fmt::format("float {}{} is outside the range of a 64-bit float (about 1.8e308)",
                                    negative ? "-" : "", text)};
      }
      --i;
      while (!part && digits.size() > 1 && digits[0] == '0') digits.erase(0, 1);
      const std::string limit = negative ? "9223372036854775808" : "9223372036854775807";
      if (!part && (digits.size() > limit.size() || (digits.size() == limit.size() && digits > limit)))
        return {line, fmt::format("integer {}{} is outside the 64-bit range [-2^63, 2^63-1]", negative ? "-" : "",
                                  digits)};
    }
  }
  return {0, ""};
}

TomlValue parse_toml(const std::string& text, const std::string& name) {
  if (auto [line, what] = prescan(text); line > 0) throw ConfigError(fmt::format("{}:{}: {}", name, line, what));
  std::istringstream in(text);
  try {
    return toml::parse<toml::discard_comments, std::map, std::vector>(in, name);
  } catch (const toml::exception& e) {
    throw ConfigError(toml_syntax_error(name, e.what(), e.location().line(), e.location().column(),
                                        e.location().line_str()));
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("{}: TOML syntax error: {}", name, e.what()));
  }
}

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
  if (text.find_first_of("\r\n") == std::string::npos) {
    std::istringstream in("x = " + text);
    try {
      auto doc = toml::parse<toml::discard_comments, std::map, std::vector>(in, "--set");
      if (doc.as_table().size() == 1 && doc.contains("x")) return doc.at("x");
    } catch (const std::exception&) {
      // not TOML: a bare string
    }
  }
  return TomlValue(text);
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
    if (auto [line, what] = prescan(text.substr(eq + 1), true); line > 0) {
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

std::pair<int, std::string> prescan_toml(const std::string& text) { return prescan(text); }

bool valid_utf8(const std::string& text) { return bad_utf8(text).first == 0; }

std::string toml_syntax_error(const std::string& name, const std::string& what, size_t line, size_t column,
                              const std::string& line_text) {
  // what() is "[error] toml::<function>: <message>\n --> <file>\n <caret picture>":
  // the message alone, and the line it points into instead of the picture.
  std::string message = what.substr(0, what.find('\n'));
  if (message.starts_with("[error] ")) message.erase(0, 8);
  if (message.starts_with("toml::")) {
    if (const size_t colon = message.find(": "); colon != std::string::npos) message.erase(0, colon + 2);
  }
  while (!message.empty() && (message.back() == '.' || message.back() == ' ')) message.pop_back();
  if (line == 0) return fmt::format("{}: TOML syntax error: {}", name, message);
  // The picture's "<line> | <text>" row for that line, and under it the
  // marker ("   |     ^--- here") whose offset is the column: more precise
  // than the exception's own location, which may be the line's start.
  std::string text = line_text;
  {
    std::vector<std::string> rows;
    for (size_t at = 0; at <= what.size();) {
      const size_t end = std::min(what.find('\n', at), what.size());
      rows.push_back(what.substr(at, end - at));
      at = end + 1;
    }
    const std::string head = fmt::format("{} | ", line);
    for (size_t i = 0; i + 1 < rows.size(); ++i) {
      const size_t h = rows[i].find(head);
      if (h == std::string::npos || rows[i].find_first_not_of(' ') != h) continue;
      const size_t bar = rows[i + 1].find("| ");
      if (bar != h + head.size() - 2) continue;
      const size_t mark = rows[i + 1].find_first_of("^~", bar + 2);
      if (mark == std::string::npos) continue;
      text = rows[i].substr(h + head.size());
      column = mark - (bar + 2) + 1;
      break;
    }
  }
  // The line, at most 60 characters of it around the column.
  if (text.size() > 60) {
    const size_t from = column > 30 ? std::min(column - 30, text.size() - 60) : 0;
    text = (from > 0 ? "..." : "") + text.substr(from, 60) + (from + 60 < text.size() ? "..." : "");
  }
  return fmt::format("{}:{}: TOML syntax error: {} (column {} of: {})", name, line, message, column,
                     text);
}

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
