// core/device.h in a build without the CUDA backend: nothing to discover, and
// every call that would need a GPU says so.
#include <string>

#include "core/device.h"
#include "core/error.h"

namespace dtrain::gpu {
namespace {
[[noreturn]] void none(const char* call) {
  throw RuntimeError(std::string(call) + ": this build has no CUDA backend (rebuild with -DDTRAIN_CUDA=ON)");
}
}  // namespace

bool built() { return false; }
int device_count(std::string* why) {
  if (why) *why = "this build has no CUDA backend";
  return 0;
}
void set_device(int) { none("set_device"); }
DeviceInfo device_info(int) { none("device_info"); }
void* malloc(size_t, int) { none("device malloc"); }
void free(void*) noexcept {}
void* malloc_host(size_t) { none("pinned malloc"); }
void free_host(void*) noexcept {}
void memcpy(void*, const void*, size_t, void*) { none("device memcpy"); }
void memset(void*, int, size_t, void*) { none("device memset"); }
void* stream_create() { none("stream_create"); }
void stream_destroy(void*) noexcept {}
void stream_sync(void*) { none("stream_sync"); }
void device_sync() { none("device_sync"); }
void* event_create(bool) { none("event_create"); }
void event_destroy(void*) noexcept {}
void event_record(void*, void*) { none("event_record"); }
void stream_wait_event(void*, void*) { none("stream_wait_event"); }
bool event_done(void*) { none("event_done"); }
void event_sync(void*) { none("event_sync"); }
float event_elapsed_ms(void*, void*) { none("event_elapsed_ms"); }
void check_launch(const char*) { none("check_launch"); }
std::string runtime_report() { return "CUDA: this build has no CUDA backend\n"; }

}  // namespace dtrain::gpu
