// The safetensors format (Hugging Face's weight files): an 8-byte
// little-endian header length N, N bytes of JSON naming each tensor's dtype,
// shape and [begin, end) byte range in the data that follows, then the raw
// little-endian data. Written here for `dtrain export --format hf` and read
// for `model.init_from = "hf:DIR"`. Reading trusts nothing: every offset,
// shape and size is checked against the file, and each problem is an
// InputError naming the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dtrain {

struct SafeTensorInfo {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16", "F64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data section
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Reads and checks the header (throws InputError).
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafeTensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafeTensorInfo* find(const std::string& name) const;  // nullptr if absent
  // A tensor's elements as float (F32 as is; F16, BF16 and F64 converted).
  std::vector<float> read_f32(const SafeTensorInfo& t) const;

 private:
  std::string path_;
  uint64_t data_start_ = 0;
  std::vector<SafeTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One float32 tensor to write.
struct SafeTensorOut {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;  // row-major, shape's element count
};

// Writes `tensors` (F32) and `metadata` to `path` (via path.tmp and a rename).
// Returns the bytes written; throws RuntimeError when the file cannot be written.
int64_t write_safetensors(const std::string& path, const std::vector<SafeTensorOut>& tensors,
                          const std::map<std::string, std::string>& metadata = {});

}  // namespace dtrain
