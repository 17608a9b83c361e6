// The device runtime seen from host code: GPU discovery, device memory,
// streams, events and copies, without a CUDA header. A build with the CUDA
// backend implements these in core/cuda_runtime.cpp (the CUDA runtime API);
// a build without it in core/no_cuda.cpp, where every call that would need a
// GPU throws a RuntimeError saying the build has no CUDA backend. Streams and
// events are opaque handles (cudaStream_t, cudaEvent_t); a null stream is the
// device's default stream. Every error names the call and the CUDA error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dtrain::gpu {

// True when this binary was built with the CUDA backend.
bool built();

// The number of usable CUDA devices; 0 with the reason in *why (the driver's
// error, or "this build has no CUDA backend").
int device_count(std::string* why);
// Makes `index` this thread's current device.
void set_device(int index);
struct DeviceInfo {
  std::string name;
  int sm_major = 0, sm_minor = 0, sm_count = 0;
  size_t total_bytes = 0, free_bytes = 0;
  std::string bus_id;  // "0000:3b:00.0": ranks that share a GPU see the same one
};
DeviceInfo device_info(int index);

// Device memory. malloc throws RuntimeError naming the bytes asked for, the
// bytes free and total, and `dtrain plan` when the device is out of memory.
void* malloc(size_t bytes, int device);
// That message, without the runtime (host-tested): "out of memory on
// cuda:D: asked for X (N bytes), F free of T; `dtrain plan` shows ...".
std::string out_of_memory_message(int device, size_t asked, size_t free_bytes, size_t total_bytes);
void free(void* p) noexcept;
// Page-locked host memory for asynchronous copies.
void* malloc_host(size_t bytes);
void free_host(void* p) noexcept;
// (Memory in use comes from device_info's free and total bytes: the driver
// counts, so there is no process-wide counter here.)

// Copies of `bytes` between any two of host and device memory (the runtime
// tells which from the pointers). stream null: the copy is complete on return.
void memcpy(void* dst, const void* src, size_t bytes, void* stream);
void memset(void* dst, int value, size_t bytes, void* stream);

void* stream_create();  // non-blocking with respect to the default stream
void stream_destroy(void* s) noexcept;
void stream_sync(void* s);
void device_sync();

void* event_create(bool timing);
void event_destroy(void* e) noexcept;
void event_record(void* e, void* stream);
void stream_wait_event(void* stream, void* e);
bool event_done(void* e);  // cudaEventQuery: true when complete
void event_sync(void* e);
float event_elapsed_ms(void* start, void* end);

// Throws RuntimeError "<what>: <CUDA error>" when the last kernel launch on
// this thread failed (checked after every launch).
void check_launch(const char* what);

// The compiled and loaded versions of the CUDA runtime and the driver, and the
// devices, one item per line; the libraries add theirs (kernels/cuda).
std::string runtime_report();

}  // namespace dtrain::gpu
