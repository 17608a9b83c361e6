#include "checkpoint/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_kind.h"

namespace dtrain {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // safetensors' own limit on the header

int64_t element_size(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

float half_to_float(uint16_t h) {
  const int sign = (h >> 15) & 1, exp = (h >> 10) & 31, man = h & 1023;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31) v = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else v = std::ldexp(static_cast<float>(man + 1024), exp - 25);
  return sign ? -v : v;
}

}  // namespace

int64_t SafeTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  require_regular_file(path, "a safetensors file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("'{}': cannot open", path));
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) throw InputError(fmt::format("'{}': cannot read its size: {}", path, ec.message()));
  unsigned char len_bytes[8];
  if (size < 8 || !f.read(reinterpret_cast<char*>(len_bytes), 8))
    throw InputError(fmt::format("'{}': too short for a safetensors file ({} bytes)", path, size));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeader || n > size - 8)
    throw InputError(fmt::format("'{}': header length {} does not fit the file ({} bytes)", path, n, size));
  std::string header(n, '\0');
  if (!f.read(header.data(), static_cast<std::streamsize>(n)))
    throw InputError(fmt::format("'{}': cannot read its {}-byte header", path, n));
  data_start_ = 8 + n;
  const uint64_t data_size = size - data_start_;
  json j;
  try {
    j = json::parse(header);
  } catch (const json::exception& e) {
    throw InputError(fmt::format("'{}': the header is not valid JSON: {}", path, e.what()));
  }
  if (!j.is_object()) throw InputError(fmt::format("'{}': the header is not a JSON object", path));
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (v.is_object())
        for (const auto& [k, mv] : v.items())
          if (mv.is_string()) metadata_[k] = mv.get<std::string>();
      continue;
    }
    const std::string& tensor = name;  // clang 14 cannot capture a structured binding
    auto bad = [&](const std::string& what) {
      return InputError(fmt::format("'{}': tensor '{}': {}", path, tensor, what));
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2)
      throw bad("expected {\"dtype\": ..., \"shape\": [...], \"data_offsets\": [begin, end]}");
    SafeTensorInfo t;
    t.name = name;
    t.dtype = v["dtype"].get<std::string>();
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40)) throw bad("a dimension is not a size");
      t.shape.push_back(d.get<int64_t>());
    }
    for (const auto& o : v["data_offsets"])
      if (!o.is_number_unsigned()) throw bad("data_offsets are not byte offsets");
    t.begin = v["data_offsets"][0].get<uint64_t>();
    t.end = v["data_offsets"][1].get<uint64_t>();
    const int64_t es = element_size(t.dtype);
    if (es == 0) throw bad(fmt::format("unknown dtype \"{}\"", t.dtype));
    if (t.begin > t.end || t.end > data_size)
      throw bad(fmt::format("bytes [{}, {}) are outside the data ({} bytes)", t.begin, t.end, data_size));
    // The bytes the shape needs, without overflow (dimensions of 2^40 each
    // multiply past 2^64, and a wrapped product could match the offsets).
    uint64_t bytes = static_cast<uint64_t>(es);
    bool overflow = false;
    for (int64_t d : t.shape) overflow |= __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes);
    if (std::find(t.shape.begin(), t.shape.end(), 0) != t.shape.end()) bytes = 0, overflow = false;
    if (overflow) throw bad(fmt::format("shape [{}] has more elements than 2^64 bytes hold", fmt::join(t.shape, ", ")));
    if (bytes != t.end - t.begin)
      throw bad(fmt::format("{} {} elements need {} bytes, the offsets give {}", bytes / static_cast<uint64_t>(es),
                            t.dtype, bytes, t.end - t.begin));
    tensors_.push_back(std::move(t));
  }
  // The format's rule (as the reference implementation enforces it): the
  // tensors' bytes tile the data, no overlap and no gap; two tensors sharing
  // bytes would import as one another.
  std::vector<const SafeTensorInfo*> by_offset;
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const SafeTensorInfo* a, const SafeTensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t at = 0;
  for (const SafeTensorInfo* t : by_offset) {
    if (t->begin != at)
      throw InputError(fmt::format("'{}': tensor '{}': bytes [{}, {}) {} the previous tensor's end at {} (the data "
                                   "must be the tensors' bytes back to back)",
                                   path, t->name, t->begin, t->end, t->begin < at ? "overlap" : "leave a gap after", at));
    at = t->end;
  }
  if (at != data_size)
    throw InputError(fmt::format("'{}': the tensors cover {} bytes of the {} after the header", path, at, data_size));
}

const SafeTensorInfo* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<float> SafetensorsFile::read_f32(const SafeTensorInfo& t) const {
  std::ifstream f(path_, std::ios::binary);
  std::vector<char> raw(t.end - t.begin);
  f.seekg(static_cast<std::streamoff>(data_start_ + t.begin));
  if (!f || !f.read(raw.data(), static_cast<std::streamsize>(raw.size())))
    throw InputError(fmt::format("'{}': tensor '{}': cannot read its {} bytes", path_, t.name, raw.size()));
  const int64_t n = t.numel();
  std::vector<float> out(n);
  const auto* b = reinterpret_cast<const unsigned char*>(raw.data());
  auto u16 = [&](int64_t i) { return static_cast<uint16_t>(b[2 * i] | (b[2 * i + 1] << 8)); };
  if (t.dtype == "F32") {
    std::memcpy(out.data(), raw.data(), raw.size());  // little-endian host (x86-64, aarch64)
  } else if (t.dtype == "F64") {
    for (int64_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, b + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
  } else if (t.dtype == "F16") {
    for (int64_t i = 0; i < n; ++i) out[i] = half_to_float(u16(i));
  } else if (t.dtype == "BF16") {
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = static_cast<uint32_t>(u16(i)) << 16;
      std::memcpy(&out[i], &bits, 4);
    }
  } else {
    throw InputError(fmt::format("'{}': tensor '{}' is {}, expected a float dtype (F32, F16, BF16, F64)",
                                 path_, t.name, t.dtype));
  }
  return out;
}

int64_t write_safetensors(const std::string& path, const std::vector<SafeTensorOut>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    DTRAIN_CHECK(n == static_cast<int64_t>(t.data.size()), "{}: {} elements for shape of {}", t.name,
                 t.data.size(), n);
    const uint64_t bytes = 4 * t.data.size();
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw RuntimeError(fmt::format("cannot write '{}'", tmp));
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((h.size() >> (8 * i)) & 0xff);
    f.write(reinterpret_cast<const char*>(len), 8);
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto& t : tensors)
      f.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(4 * t.data.size()));
    f.close();
    if (!f) throw RuntimeError(fmt::format("cannot write '{}' (disk full?)", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw RuntimeError(fmt::format("cannot rename '{}' to '{}': {}", tmp, path, ec.message()));
  return static_cast<int64_t>(8 + h.size() + offset);
}

}  // namespace dtrain
