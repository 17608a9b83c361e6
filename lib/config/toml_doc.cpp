#include "config/toml_doc.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

#include "config/schema.h"
#include "core/error.h"

namespace dtrain::config {

namespace {

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

// One line for an error of the TOML parser (toml::exception's what() and
// its location): "<name>:<line>: TOML syntax error: <message> (column <c>
// of: <the line>)", without the parser's multi-line caret picture.
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

}  // namespace

std::pair<int, std::string> prescan_toml(const std::string& text) { return prescan(text); }

std::pair<int, std::string> prescan_toml_value(const std::string& text) { return prescan(text, true); }

bool valid_utf8(const std::string& text) { return bad_utf8(text).first == 0; }

TomlDoc parse_toml(const std::string& text, const std::string& name) {
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

namespace {

std::optional<TomlDoc> parse_or_nothing(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  try {
    return toml::parse<toml::discard_comments, std::map, std::vector>(in, name);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::optional<TomlDoc> try_parse_toml(const std::string& text, const std::string& name) {
  if (prescan(text).first != 0) return std::nullopt;
  return parse_or_nothing(text, name);
}

std::optional<TomlDoc> try_parse_toml_value(const std::string& value) {
  // The value's own prescan: its length limit is the value's, not that of
  // the line "x = <value>" parsed.
  if (value.find_first_of("\r\n") != std::string::npos || prescan(value, true).first != 0) return std::nullopt;
  std::optional<TomlDoc> doc = parse_or_nothing("x = " + value, "--set");
  if (!doc || doc->as_table().size() != 1 || !doc->contains("x")) return std::nullopt;
  return doc->at("x");
}

}  // namespace dtrain::config
