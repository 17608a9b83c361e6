#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/device.h"

namespace dtrain {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::f64: return "fp64";
    case DType::bf16: return "bf16";
    case DType::f16: return "fp16";
    case DType::i32: return "int32";
    case DType::u8: return "uint8";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::u8})
    if (name == dtype_name(t)) return t;
  throw ConfigError(fmt::format("unknown dtype '{}'", name));
}

std::string Device::str() const {
  return kind == Kind::cpu ? std::string("cpu") : fmt::format("cuda:{}", index);
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  DTRAIN_CHECK(dims.size() <= kMaxRank, "rank {} exceeds {}", dims.size(), kMaxRank);
  for (int64_t d : dims) dims_[rank_++] = d;
}

void Shape::push_back(int64_t d) {
  DTRAIN_CHECK(rank_ < kMaxRank, "rank exceeds {}", kMaxRank);
  dims_[rank_++] = d;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[i] != o.dims_[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
  return s + ")";
}

Storage::Storage(size_t bytes, Device device, bool pinned)
    : bytes_(bytes), device_(device), pinned_(pinned) {
  if (!device.is_cpu()) {
    if (!gpu::built())
      throw RuntimeError(fmt::format("device {} is not available: this build has no CUDA backend",
                                     device.str()));
    ptr_ = gpu::malloc(bytes, device.index);
    return;
  }
  if (pinned) {
    ptr_ = gpu::malloc_host(bytes);
    return;
  }
  size_t rounded = (bytes + 63) / 64 * 64;
  ptr_ = std::aligned_alloc(64, rounded ? rounded : 64);
  if (!ptr_) throw RuntimeError(fmt::format("out of host memory allocating {} bytes", bytes));
}

Storage::~Storage() {
  if (!device_.is_cpu())
    gpu::free(ptr_);
  else if (pinned_)
    gpu::free_host(ptr_);
  else
    std::free(ptr_);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * dtype_size(dtype), device);
  t.shape_ = shape;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::pinned(const Shape& shape, DType dtype) {
  Tensor t;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * dtype_size(dtype),
                                         Device::cpu(), true);
  t.shape_ = shape;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

void* Tensor::raw() const {
  DTRAIN_CHECK(storage_, "use of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

Tensor Tensor::view(const Shape& shape) const {
  DTRAIN_CHECK(shape.numel() == numel(), "view {} of a tensor of shape {}", shape.str(), shape_.str());
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::narrow0(int64_t begin, int64_t end) const {
  DTRAIN_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
               "narrow0 [{}, {}) of shape {}", begin, end, shape_.str());
  int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  Tensor t = *this;
  t.offset_ += begin * row;
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::flat_range(int64_t begin, int64_t count) const {
  DTRAIN_CHECK(0 <= begin && count >= 0 && begin + count <= numel(), "flat_range [{}, +{}) of {}",
               begin, count, numel());
  Tensor t = *this;
  t.offset_ += begin;
  t.shape_ = Shape{count};
  return t;
}

void Tensor::zero_() {
  if (device().is_cpu())
    std::memset(raw(), 0, bytes());
  else
    gpu::memset(raw(), 0, bytes(), nullptr);
}

void Tensor::copy_from(const Tensor& src) {
  DTRAIN_CHECK(src.numel() == numel() && src.dtype() == dtype(), "copy_from {} {} into {} {}",
               dtype_name(src.dtype()), src.shape().str(), dtype_name(dtype()), shape().str());
  if (device().is_cpu() && src.device().is_cpu())
    std::memcpy(raw(), src.raw(), bytes());
  else
    gpu::memcpy(raw(), src.raw(), bytes(), nullptr);
}

Tensor Tensor::to_host() const {
  if (device().is_cpu()) return *this;
  Tensor h = empty(shape_, dtype_);
  h.copy_from(*this);
  return h;
}

}  // namespace dtrain
