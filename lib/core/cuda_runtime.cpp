// core/device.h on the CUDA runtime API (built with DTRAIN_CUDA only).
#include <cuda_runtime_api.h>

#include <fmt/format.h>

#include "core/device.h"
#include "core/error.h"
#include "core/format_bytes.h"

namespace dtrain::gpu {
namespace {

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess)
    throw RuntimeError(fmt::format("{}: {} ({})", call, cudaGetErrorString(e), cudaGetErrorName(e)));
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t as_event(void* e) { return static_cast<cudaEvent_t>(e); }

std::string human_bytes(size_t b) { return format_bytes(static_cast<double>(b)); }

std::string version_str(int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); }

}  // namespace

bool built() { return true; }

int device_count(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = fmt::format("cudaGetDeviceCount: {}", cudaGetErrorString(e));
    cudaGetLastError();  // clear the sticky error for later calls
    return 0;
  }
  if (n == 0 && why) *why = "cudaGetDeviceCount: no CUDA device";
  return n;
}

void set_device(int index) { check(cudaSetDevice(index), "cudaSetDevice"); }

DeviceInfo device_info(int index) {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, index), "cudaGetDeviceProperties");
  DeviceInfo d;
  d.name = p.name;
  d.sm_major = p.major;
  d.sm_minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  int cur = 0;
  check(cudaGetDevice(&cur), "cudaGetDevice");
  check(cudaSetDevice(index), "cudaSetDevice");
  check(cudaMemGetInfo(&d.free_bytes, &d.total_bytes), "cudaMemGetInfo");
  check(cudaSetDevice(cur), "cudaSetDevice");
  char bus[32] = {};
  check(cudaDeviceGetPCIBusId(bus, sizeof bus, index), "cudaDeviceGetPCIBusId");
  d.bus_id = bus;
  return d;
}

void* malloc(size_t bytes, int device) {
  auto on = [device](cudaError_t e, const char* call) {
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw RuntimeError(fmt::format("cuda:{}: {}: {}", device, call, cudaGetErrorString(e)));
    }
  };
  int cur = 0;
  on(cudaGetDevice(&cur), "cudaGetDevice");
  if (cur != device) on(cudaSetDevice(device), "cudaSetDevice");
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
  if (cur != device) cudaSetDevice(cur);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw RuntimeError(out_of_memory_message(device, bytes, free_b, total_b));
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw RuntimeError(fmt::format("cuda:{}: cudaMalloc of {} bytes: {}", device, bytes, cudaGetErrorString(e)));
  }
  return p;
}

void free(void* p) noexcept {
  if (p) cudaFree(p);
}

void* malloc_host(size_t bytes) {
  void* p = nullptr;
  check(cudaMallocHost(&p, bytes ? bytes : 64), "cudaMallocHost");
  return p;
}

void free_host(void* p) noexcept {
  if (p) cudaFreeHost(p);
}

void memcpy(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return;
  if (stream) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, as_stream(stream)), "cudaMemcpyAsync");
  } else {
    // Complete on both sides: after all work queued on any stream (compute
    // streams do not block the legacy default one), and finished on return.
    // cudaMemcpy alone is not: from pageable host memory it returns once the
    // bytes are staged, before the DMA lands, and device-to-device it returns
    // at once; a kernel then queued on a non-blocking compute stream read
    // the old bytes (seen on an H200: ops run twice on the same uploads gave
    // different results).
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
}

void memset(void* dst, int value, size_t bytes, void* stream) {
  if (bytes == 0) return;
  if (stream) {
    check(cudaMemsetAsync(dst, value, bytes, as_stream(stream)), "cudaMemsetAsync");
  } else {
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    check(cudaMemset(dst, value, bytes), "cudaMemset");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
}

void* stream_create() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  return s;
}
void stream_destroy(void* s) noexcept {
  if (s) cudaStreamDestroy(as_stream(s));
}
void stream_sync(void* s) { check(cudaStreamSynchronize(as_stream(s)), "cudaStreamSynchronize"); }
void device_sync() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

void* event_create(bool timing) {
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming),
        "cudaEventCreateWithFlags");
  return e;
}
void event_destroy(void* e) noexcept {
  if (e) cudaEventDestroy(as_event(e));
}
void event_record(void* e, void* stream) { check(cudaEventRecord(as_event(e), as_stream(stream)), "cudaEventRecord"); }
void stream_wait_event(void* stream, void* e) {
  check(cudaStreamWaitEvent(as_stream(stream), as_event(e), 0), "cudaStreamWaitEvent");
}
bool event_done(void* e) {
  cudaError_t r = cudaEventQuery(as_event(e));
  if (r == cudaErrorNotReady) return false;
  check(r, "cudaEventQuery");
  return true;
}
void event_sync(void* e) { check(cudaEventSynchronize(as_event(e)), "cudaEventSynchronize"); }
float event_elapsed_ms(void* start, void* end) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, as_event(start), as_event(end)), "cudaEventElapsedTime");
  return ms;
}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

std::string runtime_report() {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  std::string s = fmt::format("CUDA runtime: compiled {}, loaded {}\n", version_str(CUDART_VERSION),
                              version_str(rt));
  s += fmt::format("CUDA driver: {}\n", drv ? version_str(drv) : std::string("none"));
  std::string why;
  int n = device_count(&why);
  if (n == 0) {
    s += fmt::format("devices: none ({})\n", why);
  } else {
    for (int i = 0; i < n; ++i) {
      DeviceInfo d = device_info(i);
      s += fmt::format("cuda:{}: {} (sm_{}{}, {} SMs, {} free of {}, bus {})\n", i, d.name, d.sm_major,
                       d.sm_minor, d.sm_count, human_bytes(d.free_bytes), human_bytes(d.total_bytes),
                       d.bus_id);
    }
  }
  return s;
}

}  // namespace dtrain::gpu
