#include "model/seq_parallel.h"

#include "model/planned.h"
#include "ops/ops.h"

namespace dtrain {

Shape SeqParallel::local(const Shape& full) const {
  DTRAIN_CHECK(full.rank() >= 2 && full[1] % parts() == 0,
               "sequence parallelism: {} does not split along the sequence over {} ranks", full.str(),
               parts());
  Shape s = full;
  s[1] = full[1] / parts();
  return s;
}

Shape SeqParallel::full(const Shape& local) const {
  Shape s = local;
  s[1] = local[1] * parts();
  return s;
}

Shape SeqParallel::packed(const Shape& local) const {
  Shape s = local;
  s[0] = local[0] * parts();
  return s;
}

WorkHandle SeqParallel::start_gather_packed(const Tensor& local, const Tensor& packed) const {
  DTRAIN_CHECK(packed.numel() == local.numel() * parts(), "sequence parallelism: gather of {} into {}",
               local.shape().str(), packed.shape().str());
  return tp_->all_gather(local, packed);
}

void SeqParallel::gather_packed(const Tensor& local, const Tensor& packed) const {
  start_gather_packed(local, packed)->wait();
}

void SeqParallel::unpack(const Exec& ex, const Tensor& packed, const Tensor& full) const {
  // (t, B, T/t C) -> (B, t, T/t C) = (B, T, C)
  ops::transpose_blocks(ex, packed, parts(), full.size(0), full);
}

void SeqParallel::gather(const Exec& ex, const Tensor& local, const Tensor& packed,
                         const Tensor& full) const {
  const Tensor p = planned_view(packed, this->packed(local.shape()));
  gather_packed(local, p);
  unpack(ex, p, full);
}

void SeqParallel::scatter_packed(const Tensor& packed, const Tensor& local) const {
  DTRAIN_CHECK(packed.numel() == local.numel() * parts(), "sequence parallelism: scatter of {} into {}",
               packed.shape().str(), local.shape().str());
  tp_->reduce_scatter(packed, local, ReduceOp::sum)->wait();
}

void SeqParallel::scatter(const Exec& ex, const Tensor& full, const Tensor& packed,
                          const Tensor& local) const {
  const Tensor p = planned_view(packed, this->packed(local.shape()));
  // (B, t, T/t C) -> (t, B, T/t C)
  ops::transpose_blocks(ex, full, local.size(0), parts(), p);
  scatter_packed(p, local);
}

Tensor SeqParallel::shared(BufferArena* arena, const std::string& what, const Shape& shape, DType act,
                           Device device) {
  if (!arena) return Tensor::empty(shape, act, device);
  return arena->get("seq_parallel." + what, shape, act, device);
}

}  // namespace dtrain
