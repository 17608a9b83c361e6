// The profiler's device timer over core's CUDA events (profiler.h): one
// timing event per mark, made when a step first needs it and reused by every
// later step; no CUDA header (core/device.h's opaque events).
#include <vector>

#include "core/device.h"
#include "train/profiler.h"

namespace dtrain {
namespace {

class CudaEventTimer final : public DeviceTimer {
 public:
  explicit CudaEventTimer(void* stream) : stream_(stream) {}
  ~CudaEventTimer() override {
    for (void* e : events_) gpu::event_destroy(e);
  }
  CudaEventTimer(const CudaEventTimer&) = delete;
  CudaEventTimer& operator=(const CudaEventTimer&) = delete;

  void mark(size_t id) override {
    while (events_.size() <= id) events_.push_back(gpu::event_create(true));
    gpu::event_record(events_[id], stream_);
  }
  double seconds(size_t id) override {
    gpu::event_sync(events_[id]);
    return id == 0 ? 0.0 : gpu::event_elapsed_ms(events_[0], events_[id]) / 1e3;
  }
  void clear() override {}

 private:
  void* stream_;
  std::vector<void*> events_;
};

}  // namespace

std::unique_ptr<DeviceTimer> make_cuda_event_timer(void* stream) { return std::make_unique<CudaEventTimer>(stream); }

}  // namespace dtrain
