// The checksum stored with every tensor piece of a checkpoint: CRC-32 (zlib's,
// the one Python's zlib.crc32 computes, so a checkpoint can be checked from
// h5py without dtrain), computed over the bytes as stored, in 4 MiB blocks
// across threads and combined. The same pass tells whether a floating tensor
// holds only finite values, so a checkpoint is never written with NaN or inf.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace dtrain {

struct Digest {
  uint32_t crc32 = 0;
  bool finite = true;  // every element finite (always true for integer dtypes)
};

// Digest of `bytes` bytes at `data` holding elements of `dtype`.
Digest digest(const void* data, size_t bytes, DType dtype);
inline uint32_t crc32_of(const void* data, size_t bytes) { return digest(data, bytes, DType::u8).crc32; }

}  // namespace dtrain
