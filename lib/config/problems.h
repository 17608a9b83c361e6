// Where each config value came from, and the list of problems found while
// reading and validating a config. Every problem is reported (not just the
// first), each prefixed with where its value came from, in file order.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace dtrain::config {

struct Origin {
  enum class Kind { kFile, kSet, kDefault };
  Kind kind = Kind::kDefault;
  std::string where;  // "cfg.toml:12", "--set train.steps=abc", or "cfg.toml" for a default
  int order = 0;      // the line (kFile) or the override's index (kSet)

  static Origin file(const std::string& name, int line) {
    return {Kind::kFile, fmt::format("{}:{}", name, line), line};
  }
  static Origin set(const std::string& override_text, int index) {
    // Shown in every message about it: a long one shortened.
    return {Kind::kSet,
            "--set " + (override_text.size() > 100 ? override_text.substr(0, 97) + "..." : override_text), index};
  }
  static Origin defaults(const std::string& name) { return {Kind::kDefault, name, 0}; }
  bool explicit_value() const { return kind != Kind::kDefault; }
};

class Problems {
 public:
  void add(const Origin& origin, std::string what) {
    items_.push_back({origin, fmt::format("{}: {}", origin.where, what)});
  }
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }

  // File problems by line, then --set problems in command-line order, then
  // problems that belong to no single value.
  std::vector<std::string> sorted() const {
    std::vector<Item> items = items_;
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      return std::pair(a.origin.kind, a.origin.order) < std::pair(b.origin.kind, b.origin.order);
    });
    std::vector<std::string> out;
    for (auto& item : items) out.push_back(std::move(item.text));
    return out;
  }

 private:
  struct Item {
    Origin origin;
    std::string text;
  };
  std::vector<Item> items_;
};

}  // namespace dtrain::config
