// Config text and --set values through the parser and the validator: only
// ConfigError (or another dtrain error) may come out.
#include <cstdint>
#include <string>

#include "config/config.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    dtrain::parse_config(text, "fuzz.toml", {}, 1);
  } catch (const dtrain::Error&) {
  }
  // The first line as a --set value, over a valid config, on 1 and 4 ranks.
  const std::string base = "[data]\ntrain = \"t.bin\"\nval = \"v.bin\"\n[train]\nmicro_batch = 4\n";
  const std::string line = text.substr(0, text.find('\n'));
  for (const char* key : {"model.channels=", "train.micro_batch=", "parallel.timeout=", "data.train="}) {
    try {
      dtrain::parse_config(base, "base.toml", {key + line}, 1);
    } catch (const dtrain::Error&) {
    }
  }
  return 0;
}
