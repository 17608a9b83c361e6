// Activation buffers shared between layers that never need theirs at the
// same time: the mechanism behind activation recomputation. A layer planned
// with a role in an arena takes each of its buffers from the arena's slot
// for (role, buffer) instead of allocating its own, so every block of a GPT
// planned under the role "block" uses one set of buffers. That is only right
// when the block's forward is re-run before its backward (full
// recomputation), or for buffers its backward remakes itself (selective:
// the GELU output, the attention probabilities).
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace dtrain {

enum class Recompute : uint8_t { none, selective, full };
Recompute recompute_from_name(const std::string& name);  // throws ConfigError

class BufferArena {
 public:
  // The slot `key` viewed as `shape`: allocated on first use, the same storage
  // for every later caller (which must ask for no more elements and the same dtype).
  Tensor get(const std::string& key, const Shape& shape, DType dtype, Device device);
  // Bytes of every slot.
  int64_t bytes() const;
  // Whether `t`'s data lies in one of the slots.
  bool holds(const Tensor& t) const;

 private:
  std::map<std::string, Tensor> slots_;
};

}  // namespace dtrain
