// Sequence parallelism (Korthikanti et al. 2022, Megatron-LM's
// sequence_parallel): between the tensor-parallel regions of a GPT (attention
// and MLP, split by heads and hidden features) the layer norms, dropouts and
// the residual stream are split along the sequence over the tp group, so their
// activations cost 1/t per rank instead of being replicated. Every tp
// all-reduce becomes a pair: the input of a column-parallel region is
// all-gathered along the sequence, the output of a row-parallel one
// reduce-scattered along it (all-gather + reduce-scatter move what one
// all-reduce does).
//
// Layout. Activations stay (B, T, C) row-major, so rank r's slice is
// (B, T/t, C): positions [r T/t, (r + 1) T/t) of every sample, not contiguous
// in the full tensor. The collectives work on the rank-major "packed" order
// (t, B, T/t, C), in which every rank's slice is one contiguous block; one
// block transpose (ops::transpose_blocks, a copy) turns packed into (B, T, C)
// where the sequence order matters (attention, the head's logits against the
// targets). The MLP is row-wise (fc, GELU, proj act on each token alone), so
// it runs on the packed order directly and needs no copy at all. The
// alternative, Megatron's (T, B, C) everywhere, would make the slices
// contiguous but needs every layer and kernel (attention, embeddings, loss)
// rewritten for a sequence-first layout.
#pragma once

#include <string>

#include "core/comm.h"
#include "core/exec.h"
#include "core/tensor.h"
#include "model/arena.h"

namespace dtrain {

class SeqParallel {
 public:
  SeqParallel() = default;  // off
  // On when tp has more than one member.
  explicit SeqParallel(Communicator* tp) : tp_(tp && tp->size() > 1 ? tp : nullptr) {}

  bool on() const { return tp_ != nullptr; }
  Communicator& tp() const { return *tp_; }
  int64_t parts() const { return tp_ ? tp_->size() : 1; }
  int64_t rank() const { return tp_ ? tp_->rank() : 0; }

  // (B, T, ...) -> (B, T/t, ...) and back; packed: (t B, T/t, ...).
  Shape local(const Shape& full) const;
  Shape full(const Shape& local) const;
  Shape packed(const Shape& local) const;
  // The first position of this rank's slice, and the offset of its first
  // element inside a whole sample (what its dropout masks are keyed by).
  int64_t first_position(const Shape& local) const { return rank() * local[1]; }
  int64_t first_element(const Tensor& local) const {
    return rank() * (local.numel() / local.size(0));
  }

  // local (B, T/t, C) -> packed (t B, T/t, C): every rank's slice, rank-major.
  void gather_packed(const Tensor& local, const Tensor& packed) const;
  // The same, started: packed is written when the returned Work is waited.
  WorkHandle start_gather_packed(const Tensor& local, const Tensor& packed) const;
  // packed (t B, T/t, C) -> full (B, T, C), the sequence order.
  void unpack(const Exec& ex, const Tensor& packed, const Tensor& full) const;
  // ... and into the sequence order: full (B, T, C); packed is scratch.
  void gather(const Exec& ex, const Tensor& local, const Tensor& packed, const Tensor& full) const;
  // packed (t B, T/t, C) partial sums -> local: this rank's slice of their sum.
  void scatter_packed(const Tensor& packed, const Tensor& local) const;
  // The same from the sequence order full (B, T, C); packed is scratch.
  void scatter(const Exec& ex, const Tensor& full, const Tensor& packed, const Tensor& local) const;

  // The packed scratch for inputs of at most `local`'s shape: one per model
  // (every layer's is the same size, B T C elements), from `arena` when given.
  Tensor scratch(BufferArena* arena, const Shape& local, DType act, Device device) const {
    return shared(arena, "scratch", packed(local), act, device);
  }
  // A buffer a layer uses only within one forward or one backward call (a
  // reduced slice, a gathered gradient): one per model for all layers, under
  // the arena slot "seq_parallel.<what>", or the layer's own without an arena.
  static Tensor shared(BufferArena* arena, const std::string& what, const Shape& shape, DType act,
                       Device device);

 private:
  Communicator* tp_ = nullptr;
};

}  // namespace dtrain
