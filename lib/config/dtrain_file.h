// The dtrain TOML files (training configs, hardware descriptions, sweep
// files): reading one safely, and which kind a document is, from its
// top-level keys: what lets a loader given the wrong kind (a training config
// as --hardware, a hardware file to `dtrain run`, a config to `dtrain sweep`)
// say so in one line instead of one line per key.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dtrain::config {

enum class FileKind { training, hardware, sweep };

// The text of the dtrain TOML file at `path`, `what` it is for the message
// ("config", "sweep file", "hardware file"): a regular file (a FIFO would
// block the read) of at most kMaxTomlFileBytes. A ConfigError naming the
// path and what is wrong otherwise ("{path}: cannot read {what}: ..."). What
// the text holds is parse_toml's (config/toml_doc.h) to check before it parses it.
std::string read_toml_file(const std::string& path, std::string_view what);

// "a training config", "a hardware description", "a sweep file".
std::string_view file_kind_name(FileKind kind);

// Where `keys` (a document's top-level keys) hold none of `expected`'s and
// some of another kind's: "a training config (it has [model], [data])";
// else "" (the loader reports the keys it does not know, one by one).
std::string other_file_kind(const std::vector<std::string>& keys, FileKind expected);
// The same for a parsed document's top-level table (any map from key names).
template <class Table>
std::string other_file_kind_of(const Table& table, FileKind expected) {
  std::vector<std::string> keys;
  for (const auto& entry : table) keys.push_back(entry.first);
  return other_file_kind(keys, expected);
}

}  // namespace dtrain::config
