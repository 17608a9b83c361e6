// Parsing a dtrain TOML document (a training config, a hardware description,
// a sweep file, a --set value): the text checked first for what would crash
// or mislead toml11's parser (prescan_toml, below), then parsed, with its errors in
// one line. The one file that instantiates the parser: its templates cost
// every file that calls it 10-20 s of compile time.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <toml.hpp>

namespace dtrain::config {

// A parsed document. Tables keep their keys sorted (std::map), so what is
// said of them comes out in a fixed order; comments are dropped.
using TomlDoc = toml::basic_value<toml::discard_comments, std::map, std::vector>;

// `text` as TOML, `name` (its path) in messages: prescanned, then parsed. A
// ConfigError of one line otherwise: "<name>:<line>: <problem>" or
// "<name>:<line>: TOML syntax error: <message> (column <c> of: <the line>)".
TomlDoc parse_toml(const std::string& text, const std::string& name);

// `text` parsed as above, or nothing where the prescan or the parser refuses
// it: for a file that may not be the one looked for.
std::optional<TomlDoc> try_parse_toml(const std::string& text, const std::string& name);

// One --set value (the text after '='), parsed as a TOML value
// (prescan_toml_value first), or nothing where it is not one: then it is a
// string.
std::optional<TomlDoc> try_parse_toml_value(const std::string& value);

// What the TOML parser cannot be trusted with, found before it runs (invalid
// UTF-8, nesting deeper than it can recurse, integers outside int64, lines
// and dotted keys long enough to make it crawl): the 1-based line and the
// problem, or line 0. The parsers above run it first.
std::pair<int, std::string> prescan_toml(const std::string& text);
// The same for one --set value: its length limit is a value's, not a line's.
std::pair<int, std::string> prescan_toml_value(const std::string& text);

}  // namespace dtrain::config
