#include "model/arena.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dtrain {

Recompute recompute_from_name(const std::string& name) {
  if (name == "none") return Recompute::none;
  if (name == "selective") return Recompute::selective;
  if (name == "full") return Recompute::full;
  throw ConfigError(fmt::format("train.recompute: '{}': expected none, selective or full", name));
}

Tensor BufferArena::get(const std::string& key, const Shape& shape, DType dtype, Device device) {
  auto it = slots_.find(key);
  if (it == slots_.end()) it = slots_.emplace(key, Tensor::empty(Shape{shape.numel()}, dtype, device)).first;
  const Tensor& slot = it->second;
  DTRAIN_CHECK(slot.dtype() == dtype && slot.numel() >= shape.numel() && slot.device() == device,
               "arena slot {}: {} {} asked of a {} slot of {}", key, dtype_name(dtype), shape.str(),
               dtype_name(slot.dtype()), slot.numel());
  if (slot.numel() == shape.numel()) return slot.view(shape);
  return slot.flat_range(0, shape.numel()).view(shape);
}

bool BufferArena::holds(const Tensor& t) const {
  if (!t.defined() || t.numel() == 0) return false;
  const auto* p = static_cast<const char*>(t.raw());
  for (const auto& [k, slot] : slots_) {
    const auto* first = static_cast<const char*>(slot.raw());
    if (slot.device() == t.device() && p >= first && p < first + slot.bytes()) return true;
  }
  return false;
}

int64_t BufferArena::bytes() const {
  int64_t b = 0;
  for (const auto& [k, t] : slots_) b += static_cast<int64_t>(t.bytes());
  return b;
}

}  // namespace dtrain
