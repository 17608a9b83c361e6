#include "checkpoint/checksum.h"

#include <zlib.h>

#include <cmath>
#include <vector>

namespace dtrain {

namespace {

constexpr size_t kBlock = size_t{1} << 22;  // 4 MiB: cache-sized, many blocks per thread

template <class T>
bool all_finite(const unsigned char* p, size_t bytes) {
  const T* x = reinterpret_cast<const T*>(p);
  const size_t n = bytes / sizeof(T);
  bool ok = true;
#pragma omp simd reduction(&& : ok)
  for (size_t i = 0; i < n; ++i) ok = ok && std::isfinite(x[i]);
  return ok;
}

bool block_finite(const unsigned char* p, size_t bytes, DType dtype) {
  switch (dtype) {
    case DType::f32: return all_finite<float>(p, bytes);
    case DType::f64: return all_finite<double>(p, bytes);
    default: return true;
  }
}

}  // namespace

Digest digest(const void* data, size_t bytes, DType dtype) {
  const auto* p = static_cast<const unsigned char*>(data);
  const size_t nblocks = bytes == 0 ? 0 : (bytes + kBlock - 1) / kBlock;
  std::vector<uLong> crcs(nblocks);
  std::vector<unsigned char> finite(nblocks, 1);
  const auto len = [&](size_t b) { return b + 1 < nblocks ? kBlock : bytes - b * kBlock; };
#pragma omp parallel for schedule(static) if (nblocks > 1)
  for (size_t b = 0; b < nblocks; ++b) {
    const unsigned char* q = p + b * kBlock;
    finite[b] = block_finite(q, len(b), dtype);
    crcs[b] = crc32(0L, q, static_cast<uInt>(len(b)));
  }
  Digest d;
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t b = 0; b < nblocks; ++b) {
    crc = b == 0 ? crcs[0] : crc32_combine(crc, crcs[b], static_cast<z_off_t>(len(b)));
    d.finite = d.finite && finite[b];
  }
  d.crc32 = static_cast<uint32_t>(crc);
  return d;
}

}  // namespace dtrain
