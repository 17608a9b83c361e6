// StagingPool, StagedWork and the CUDA copier of the MPI-staged device path
// (staging.h). No CUDA header: the copies go through core/device.h.
#include "dist/staging.h"

#include <fmt/format.h>

#include <bit>

#include "core/device.h"

namespace dtrain {

namespace {

class CudaCopier : public StagingCopier {
 public:
  explicit CudaCopier(void* stream) : stream_(stream) {}
  void to_host(const Tensor& host, const Tensor& device) override {
    if (device.bytes() == 0) return;
    if (!stream_) gpu::device_sync();  // the producer may be on any stream
    gpu::memcpy(host.raw(), device.raw(), device.bytes(), stream_);
    if (stream_) gpu::stream_sync(stream_);
  }
  void to_device(const Tensor& device, const Tensor& host) override {
    if (device.bytes() == 0) return;
    gpu::memcpy(device.raw(), host.raw(), device.bytes(), stream_);
    if (stream_) gpu::stream_sync(stream_);
  }

 private:
  void* stream_;
};

}  // namespace

std::shared_ptr<StagingCopier> cuda_staging_copier(void* stream) {
  std::string why;
  if (gpu::device_count(&why) == 0)
    throw RuntimeError(fmt::format("device tensors cannot be staged for MPI: {}", why));
  return std::make_shared<CudaCopier>(stream);
}

int64_t staging_capacity(int64_t n) {
  return static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(n, 4096))));
}

StagingPool::StagingPool(Allocate allocate) : allocate_(std::move(allocate)) {
  if (!allocate_)
    allocate_ = [](int64_t n, DType t) { return Tensor::pinned(Shape{n}, t); };
}

StagingPool::Lease StagingPool::take(DType dtype, int64_t n) {
  DTRAIN_CHECK(n >= 0, "staging buffer of {} elements", n);
  int best = -1, free_slot = -1;
  for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
    const Slot& s = slots_[i];
    if (!s.buffer.defined()) {
      if (free_slot < 0) free_slot = i;
      continue;
    }
    if (s.busy || s.buffer.dtype() != dtype || s.buffer.numel() < n) continue;
    if (best < 0 || s.buffer.numel() < slots_[best].buffer.numel()) best = i;
  }
  if (best < 0) {
    Tensor buffer = allocate_(staging_capacity(n), dtype);
    ++allocations_;
    if (free_slot < 0) {
      free_slot = static_cast<int>(slots_.size());
      slots_.emplace_back();
    }
    slots_[free_slot].buffer = std::move(buffer);
    best = free_slot;
  }
  slots_[best].busy = true;
  return {best, slots_[best].buffer.flat_range(0, n)};
}

void StagingPool::give_back(int slot) {
  DTRAIN_CHECK(slot >= 0 && slot < static_cast<int>(slots_.size()) && slots_[slot].busy,
               "staging slot {} returned but not taken", slot);
  slots_[slot].busy = false;
}

void StagingPool::forget(int slot) {
  DTRAIN_CHECK(slot >= 0 && slot < static_cast<int>(slots_.size()), "staging slot {} unknown", slot);
  slots_[slot] = Slot{};
}

size_t StagingPool::bytes() const {
  size_t b = 0;
  for (const Slot& s : slots_) b += s.buffer.defined() ? s.buffer.bytes() : 0;
  return b;
}

int StagingPool::busy() const {
  int n = 0;
  for (const Slot& s : slots_) n += s.busy ? 1 : 0;
  return n;
}

StagedWork::StagedWork(WorkHandle inner, std::vector<Back> back,
                       std::shared_ptr<StagingCopier> copier, std::shared_ptr<StagingPool> pool,
                       std::vector<int> slots)
    : inner_(std::move(inner)),
      back_(std::move(back)),
      copier_(std::move(copier)),
      pool_(std::move(pool)),
      slots_(std::move(slots)) {}

StagedWork::~StagedWork() {
  if (done_) return;
  // MPI may still own the host buffers (the inner Work keeps them alive as
  // an orphan): they must never be handed out again.
  for (int s : slots_) pool_->forget(s);
}

void StagedWork::finish() {
  for (const Back& b : back_) copier_->to_device(b.device, b.host);
  for (int s : slots_) pool_->give_back(s);
  done_ = true;
}

void StagedWork::wait() {
  if (done_) return;
  inner_->wait();
  finish();
}

bool StagedWork::test() {
  if (done_) return true;
  if (!inner_->test()) return false;
  finish();
  return true;
}

}  // namespace dtrain
