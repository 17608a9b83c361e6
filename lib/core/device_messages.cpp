// The device runtime's messages that carry numbers, apart from the runtime
// (cuda_runtime.cpp) so that they are built and tested without CUDA.
#include <fmt/format.h>

#include "core/device.h"
#include "core/format_bytes.h"

namespace dtrain::gpu {

std::string out_of_memory_message(int device, size_t asked, size_t free_bytes, size_t total_bytes) {
  return fmt::format(
      "out of memory on cuda:{}: asked for {} ({} bytes), {} free of {}; `dtrain plan` shows "
      "what a layout needs per device (try more tp/pp, ZeRO, recomputation or a smaller micro_batch)",
      device, format_bytes(static_cast<double>(asked)), asked, format_bytes(static_cast<double>(free_bytes)),
      format_bytes(static_cast<double>(total_bytes)));
}

}  // namespace dtrain::gpu
