// Writing a config back out: the resolved config as TOML (saved beside each
// run, so a run can be repeated from it), and the key reference for --help.
#include <algorithm>

#include <fmt/format.h>

#include "config/config.h"
#include "config/schema.h"

namespace dtrain {

std::string to_toml(const Config& c, const std::vector<std::string>& omit) {
  using namespace config;
  std::string out;
  if (!c.source.empty()) out += fmt::format("# resolved from {}\n", c.source);
  std::string section;
  for (const KeySpec& spec : schema()) {
    // Keys of the other model type stay out: setting them is an error.
    if (!applies_to(spec.applies, c.model.type)) continue;
    if (std::find(omit.begin(), omit.end(), spec.name()) != omit.end()) continue;
    if (spec.section != section) {
      section = spec.section;
      out += fmt::format("{}[{}]\n", out.empty() ? "" : "\n", section);
    }
    out += fmt::format("{} = {}\n", spec.key, toml_literal(get(spec, c)));
  }
  return out;
}

std::vector<std::string> planned_keys(const std::string& list) {
  std::vector<std::string> keys;
  size_t start = 0;
  while (start <= list.size() && !list.empty()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    keys.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return keys;
}

const std::vector<std::string>& planner_keys() {
  static const std::vector<std::string> keys = {
      "parallel.dp",        "parallel.tp",       "parallel.pp",      "parallel.zero",
      "parallel.schedule",  "parallel.virtual_stages", "parallel.sequence_parallel",
      "train.micro_batch",  "train.grad_accum",  "train.recompute"};
  return keys;
}

std::string describe_keys() {
  using namespace config;
  struct Row {
    std::string name, type, default_value, applies, help;
  };
  std::vector<Row> rows;
  for (const KeySpec& spec : schema()) {
    std::string help = spec.help;
    std::string constraint = describe_constraint(spec.constraint, spec.kind());
    if (!constraint.empty()) help += " (" + constraint + ")";
    rows.push_back({spec.name(), kind_name(spec.kind()), toml_literal(spec.default_value),
                    applies_name(spec.applies), help});
  }
  size_t w_name = 0, w_type = 0, w_default = 0, w_applies = 0;
  for (const Row& r : rows) {
    w_name = std::max(w_name, r.name.size());
    w_type = std::max(w_type, r.type.size());
    w_default = std::max(w_default, r.default_value.size());
    w_applies = std::max(w_applies, r.applies.size());
  }
  std::string out;
  for (const Row& r : rows)
    out += fmt::format("{:<{}}  {:<{}}  {:<{}}  {:<{}}  {}\n", r.name, w_name, r.type, w_type,
                       r.default_value, w_default, r.applies, w_applies, r.help);
  return out;
}

}  // namespace dtrain
