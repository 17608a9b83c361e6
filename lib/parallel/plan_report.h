// `dtrain plan`'s output: the ranked layouts as an aligned table (with the
// rejected layouts and why), or the same as JSON for scripts.
#pragma once

#include <string>

#include "parallel/planner.h"

namespace dtrain {

// The `top` fastest layouts, then one line per layout (dp, tp, pp) with no
// candidate that fits, giving its nearest miss.
std::string format_plan_text(const Plan& plan, int top);

// Everything: the `top` fastest layouts (top <= 0: all of them) and every
// rejection, machine-readable.
std::string format_plan_json(const Plan& plan, int top);

}  // namespace dtrain
