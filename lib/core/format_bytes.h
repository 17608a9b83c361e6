// The one human-readable size in dtrain's messages, logs and errors, so a
// checkpoint's size, a GPU's memory and a config's footprint read alike:
// binary units (1 KiB = 1024 bytes), one decimal ("1.5 GiB", "474.7 MiB"),
// whole bytes below 1 KiB ("512 B"). Tables with a fixed unit column (the
// planner's GiB, the profile's MiB) scale their numbers themselves.
#pragma once

#include <string>

namespace dtrain {

// "0 B", "512 B", "1.5 KiB", "80.0 GiB", ... up to EiB ("2.1e+03 EiB"
// beyond); a negative size keeps its sign ("-1.0 MiB"); NaN is "nan B".
std::string format_bytes(double bytes);

}  // namespace dtrain
