// Text that came from outside (a config's line, a path, a file's contents)
// made safe to echo on a terminal: control bytes (a NUL, an escape sequence
// that would recolour the terminal, a carriage return) and bytes that are not
// UTF-8 are written as \xNN; valid UTF-8 is kept.
#pragma once

#include <string>
#include <string_view>

namespace dtrain {

// One line: a newline is escaped too. With keep_lines, '\n' and '\t' stay
// (a report of several lines).
std::string printable(std::string_view s, bool keep_lines = false);

}  // namespace dtrain
