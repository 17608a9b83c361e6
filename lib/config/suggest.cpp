// "Did you mean ...?" for unknown keys and sections: a near miss in the same
// section first (edit distance <= 2, or a unique prefix), then the same key
// name, or one edit from it, in another section (train.lr -> optim.lr).
#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "config/schema.h"

namespace dtrain::config {

namespace {

constexpr int kMaxDistance = 2;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

// The candidates at the smallest distance <= kMaxDistance from `word`.
std::vector<std::string> nearest(std::string_view word, const std::vector<std::string>& candidates,
                                 const std::vector<std::string>& full_names, int max_distance = kMaxDistance) {
  int best = max_distance + 1;
  std::vector<std::string> out;
  for (size_t i = 0; i < candidates.size(); ++i) {
    int d = edit_distance(lower(word), lower(candidates[i]));
    // A distance as large as the word itself is no resemblance ("xy" vs "lr").
    if (d >= static_cast<int>(std::max(word.size(), candidates[i].size()))) continue;
    if (d < best) {
      best = d;
      out.clear();
    }
    if (d == best) out.push_back(full_names[i]);
  }
  return out;
}

// The single candidate that `word` is a prefix of, or that is a prefix of
// `word` ("warmup" -> "warmup_steps", "optimizer" -> "optim").
std::vector<std::string> unique_prefix(std::string_view word,
                                       const std::vector<std::string>& candidates,
                                       const std::vector<std::string>& full_names) {
  std::vector<std::string> out;
  std::string w = lower(word);
  for (size_t i = 0; i < candidates.size(); ++i) {
    std::string c = lower(candidates[i]);
    bool word_is_prefix = w.size() >= 2 && c.starts_with(w);
    bool candidate_is_prefix = c.size() >= 2 && w.starts_with(c);
    if (word_is_prefix || candidate_is_prefix) out.push_back(full_names[i]);
  }
  if (out.size() != 1) out.clear();
  return out;
}

}  // namespace

int edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::vector<std::string> suggest_keys(std::string_view section, std::string_view key) {
  std::vector<std::string> same_keys, same_names, other_keys, other_names;
  for (const KeySpec& k : schema()) {
    bool same = section == k.section;
    (same ? same_keys : other_keys).push_back(k.key);
    (same ? same_names : other_names).push_back(k.name());
  }
  // The exact key of another section first ("train.zero" is parallel.zero,
  // not the nearby train.seed).
  std::vector<std::string> exact;
  for (size_t i = 0; i < other_keys.size(); ++i)
    if (other_keys[i] == key) exact.push_back(other_names[i]);
  if (!exact.empty()) return exact;
  if (auto s = nearest(key, same_keys, same_names); !s.empty()) return s;
  if (auto s = unique_prefix(key, same_keys, same_names); !s.empty()) return s;
  // The key exists in another section, or nearly (one edit: "parallel.bogus"
  // is not "model.bias").
  return nearest(key, other_keys, other_names, 1);
}

std::vector<std::string> suggest_among(std::string_view word, const std::vector<std::string>& names) {
  // A prefix first: "h100" is h100-sxm, not h200 one edit away.
  if (auto s = unique_prefix(word, names, names); !s.empty()) return s;
  return nearest(word, names, names);
}

std::vector<std::string> suggest_sections(std::string_view section) {
  if (auto s = nearest(section, sections(), sections()); !s.empty()) return s;
  return unique_prefix(section, sections(), sections());
}

std::string did_you_mean(const std::vector<std::string>& names) {
  if (names.empty()) return "";
  std::vector<std::string> quoted;
  for (const auto& n : names) quoted.push_back("'" + n + "'");
  return fmt::format(" (did you mean {}?)", fmt::join(quoted, " or "));
}

}  // namespace dtrain::config
