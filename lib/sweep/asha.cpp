#include "sweep/asha.h"

#include <algorithm>
#include <cmath>

namespace dtrain::sweep {

bool Asha::better(double a, double b) const {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return maximize_ ? a > b : a < b;
}

bool Asha::decide(int64_t rung, double value) {
  std::vector<double>& v = seen_[rung];
  v.push_back(value);
  const auto keep = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(v.size()) / reduction_)));
  const auto ahead = std::count_if(v.begin(), v.end(), [&](double x) { return better(x, value); });
  return !std::isnan(value) && ahead < keep;
}

}  // namespace dtrain::sweep
