// The config schema: every key of every section, declared once in schema.cpp
// with its type, default, constraint, help text and the model type it applies
// to, and bound to its Config field. The parser, the validator, to_toml and
// describe_keys all walk this one table, so a key cannot be documented,
// defaulted or checked in one place and forgotten in another.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "config/config.h"

namespace dtrain::config {

// A key's value; the alternative's index is the key's Kind.
// kStrings (paths) reads a string as a one-element list and writes a
// one-element list back as a string.
using Value = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>, std::vector<double>,
                           std::vector<std::string>>;
enum class Kind { kInt, kFloat, kBool, kString, kInts, kFloats, kStrings };

// Accessors binding a key to its Config field; index matches Value and Kind.
using Field = std::variant<int64_t& (*)(Config&), double& (*)(Config&), bool& (*)(Config&),
                           std::string& (*)(Config&), std::vector<int64_t>& (*)(Config&),
                           std::vector<double>& (*)(Config&), std::vector<std::string>& (*)(Config&)>;

enum class Applies { kAll, kGpt, kCnn };

struct Bound {
  double value;
  bool inclusive;
};

// What a valid value looks like, beyond its type. For arrays, lo/hi bound
// every element.
struct Constraint {
  std::optional<Bound> lo, hi;
  std::vector<std::string> choices;  // strings: the allowed values (empty = any)
  bool non_empty = false;            // arrays: at least one element
};

struct KeySpec {
  const char* section;
  const char* key;
  Applies applies;
  Value default_value;
  Constraint constraint;
  const char* help;
  Field field;

  std::string name() const { return std::string(section) + "." + key; }
  Kind kind() const { return static_cast<Kind>(default_value.index()); }
};

// Every key, grouped by section, in the order to_toml writes them.
const std::vector<KeySpec>& schema();
// The sections, in schema order.
const std::vector<std::string>& sections();
// The key, or nullptr if there is none.
const KeySpec* find_key(std::string_view section, std::string_view key);
// The key's position in schema().
inline size_t index_of(const KeySpec& spec) { return static_cast<size_t>(&spec - schema().data()); }

bool applies_to(Applies applies, std::string_view model_type);
const char* applies_name(Applies applies);  // "all" | "gpt" | "cnn"

Value get(const KeySpec& spec, const Config& c);
void set(const KeySpec& spec, Config& c, const Value& v);

// Text for messages and output.
std::string toml_literal(const Value& v);          // e.g. 3, 0.1, "gpt", [32, 64]
std::string toml_string(std::string_view s);       // a quoted, escaped TOML basic string
std::string toml_float(double x);                  // shortest text that reads back as x
const char* kind_name(Kind kind);                  // "int", "float", ...: for describe_keys
const char* kind_phrase(Kind kind);                // "an integer", "a number", ...
std::string describe_bounds(const Constraint& c);  // ">= 1", "in [0, 1)", "" if none
std::string describe_constraint(const Constraint& c, Kind kind);  // everything, for help

// Whether `text` is valid UTF-8 (what every string in a TOML file must be).
bool valid_utf8(const std::string& text);
// The most a TOML file dtrain reads (config, sweep, hardware) may have: the
// parser's time grows faster than its input.
inline constexpr uintmax_t kMaxTomlFileBytes = uintmax_t{1} << 20;

// "edit distance": the optimal-string-alignment distance (adjacent swaps cost 1).
int edit_distance(std::string_view a, std::string_view b);
// Full names ("optim.lr") the user may have meant by `section.key`, or by a
// bare `key` outside any section when `section` is empty.
std::vector<std::string> suggest_keys(std::string_view section, std::string_view key);
// Which of `names` (a preset, a choice) the user may have meant by `word`.
std::vector<std::string> suggest_among(std::string_view word, const std::vector<std::string>& names);
// Section names the user may have meant.
std::vector<std::string> suggest_sections(std::string_view section);
// " (did you mean 'a' or 'b'?)", or "" when there is nothing to suggest.
std::string did_you_mean(const std::vector<std::string>& names);

}  // namespace dtrain::config
