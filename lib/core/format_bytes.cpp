#include "core/format_bytes.h"

#include <cmath>

#include <fmt/format.h>

namespace dtrain {

std::string format_bytes(double bytes) {
  if (std::isnan(bytes)) return "nan B";
  const char* sign = bytes < 0 ? "-" : "";
  double b = std::fabs(bytes);
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (b >= 1024 && u < 6) {
    b /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{}{:.0f} B", sign, b);
  if (u == 6 && b >= 1024) return fmt::format("{}{:.2g} EiB", sign, b);
  return fmt::format("{}{:.1f} {}", sign, b, kUnits[u]);
}

}  // namespace dtrain
