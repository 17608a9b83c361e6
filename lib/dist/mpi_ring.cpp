// The ring reduce-scatter (mpi_ring.h).
#include "dist/mpi_ring.h"

#include <algorithm>
#include <cstring>

#include "core/bf16.h"
#include "core/error.h"

namespace dtrain::detail {

namespace {

template <class T, class F>
void combine(const void* a, void* b, int64_t n, F f) {
  const T* x = static_cast<const T*>(a);
  T* y = static_cast<T*>(b);
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i], y[i]);
}

template <class T>
void reduce_typed(ReduceOp op, const void* a, void* b, int64_t n) {
  switch (op) {
    case ReduceOp::sum: return combine<T>(a, b, n, [](T x, T y) { return static_cast<T>(x + y); });
    case ReduceOp::max: return combine<T>(a, b, n, [](T x, T y) { return x > y ? x : y; });
    case ReduceOp::min: return combine<T>(a, b, n, [](T x, T y) { return x < y ? x : y; });
  }
  throw InternalError("unknown ReduceOp");
}

void reduce_bf16(ReduceOp op, const void* a, void* b, int64_t n) {
  auto with = [&](auto f) {
    combine<bf16>(a, b, n, [&](bf16 x, bf16 y) { return bf16(f(float(x), float(y))); });
  };
  switch (op) {
    case ReduceOp::sum: return with([](float x, float y) { return x + y; });
    case ReduceOp::max: return with([](float x, float y) { return x > y ? x : y; });
    case ReduceOp::min: return with([](float x, float y) { return x < y ? x : y; });
  }
  throw InternalError("unknown ReduceOp");
}

}  // namespace

void reduce_into(DType t, ReduceOp op, const void* a, void* b, int64_t n) {
  switch (t) {
    case DType::f32: return reduce_typed<float>(op, a, b, n);
    case DType::f64: return reduce_typed<double>(op, a, b, n);
    case DType::i32: return reduce_typed<int32_t>(op, a, b, n);
    case DType::bf16: return reduce_bf16(op, a, b, n);
    default: throw InternalError(fmt::format("reduce_into: {} is not reduced", dtype_name(t)));
  }
}

size_t RingReduceScatter::scratch_bytes(const std::vector<int>& parts, DType t) {
  if (parts.size() < 2) return 0;
  return 2 * static_cast<size_t>(*std::max_element(parts.begin(), parts.end())) * dtype_size(t);
}

RingReduceScatter::RingReduceScatter(MPI_Comm comm, int rank, int size, int tag, DType t, MPI_Datatype type,
                                     ReduceOp op, const void* in, void* out, std::vector<int> parts, Tensor scratch)
    : comm_(comm),
      rank_(rank),
      size_(size),
      tag_(tag),
      dtype_(t),
      type_(type),
      op_(op),
      in_(static_cast<const std::byte*>(in)),
      out_(static_cast<std::byte*>(out)),
      parts_(std::move(parts)),
      offsets_(parts_.size() + 1, 0),
      esize_(dtype_size(t)),
      scratch_(std::move(scratch)) {
  DTRAIN_CHECK(static_cast<int>(parts_.size()) == size_, "ring reduce-scatter: {} parts for {} members",
               parts_.size(), size_);
  for (size_t m = 0; m < parts_.size(); ++m) offsets_[m + 1] = offsets_[m] + parts_[m];
  if (size_ > 1) {
    DTRAIN_CHECK(scratch_.defined() && scratch_.bytes() >= scratch_bytes(parts_, t),
                 "ring reduce-scatter: a scratch buffer of {} bytes is too small", scratch_.defined() ? scratch_.bytes() : 0);
    const size_t largest = scratch_bytes(parts_, t) / 2;
    send_ = static_cast<std::byte*>(scratch_.raw());
    recv_ = send_ + largest;
  }
}

int RingReduceScatter::start() {
  if (size_ == 1) {
    // Alone: the part is the input (memmove: out may be the start of in).
    std::memmove(out_, in_part(0), static_cast<size_t>(parts_[0]) * esize_);
    return MPI_SUCCESS;
  }
  // Step 0 sends this member's own piece of part r - 1, where that part's sum begins.
  const int first = (rank_ - 1 + size_) % size_;
  std::memcpy(send_, in_part(first), static_cast<size_t>(parts_[first]) * esize_);
  return post();
}

int RingReduceScatter::post() {
  // Step s sends the partial of part r - s - 1 right and receives the partial
  // of part r - s - 2 from the left.
  const int right = (rank_ + 1) % size_, left = (rank_ - 1 + size_) % size_;
  const int sent = ((rank_ - step_ - 1) % size_ + size_) % size_;
  const int got = ((rank_ - step_ - 2) % size_ + size_) % size_;
  int rc = MPI_Irecv(recv_, parts_[got], type_, left, tag_, comm_, &requests_[0]);
  if (rc != MPI_SUCCESS) return rc;
  return MPI_Isend(send_, parts_[sent], type_, right, tag_, comm_, &requests_[1]);
}

int RingReduceScatter::progress(bool* done) {
  *done = size_ == 1;
  if (*done) return MPI_SUCCESS;
  int flag = 0;
  int rc = MPI_Testall(2, requests_, &flag, MPI_STATUSES_IGNORE);
  if (rc != MPI_SUCCESS || !flag) return rc;
  // The partial of part `got` arrived: add this member's piece of it. The
  // last step's part is this member's own, summed into out.
  const int got = ((rank_ - step_ - 2) % size_ + size_) % size_;
  const bool last = step_ == size_ - 2;
  const int64_t n = parts_[got];
  if (last) {
    // out may be the start of in: nothing reads in after this step.
    std::memmove(out_, in_part(got), static_cast<size_t>(n) * esize_);
    reduce_into(dtype_, op_, recv_, out_, n);
    *done = true;
    return MPI_SUCCESS;
  }
  reduce_into(dtype_, op_, in_part(got), recv_, n);
  std::swap(send_, recv_);
  ++step_;
  return post();
}

}  // namespace dtrain::detail
