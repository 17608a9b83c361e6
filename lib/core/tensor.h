// Tensor: a typed, shaped view into device memory. Every tensor carries its
// device and dtype from day one so that layers, optimizers and communicators
// are written once against this interface and the CUDA backend slots in as
// another Device kind. Tensors are cheap handles (a shared_ptr to the storage
// plus an offset and a shape); copying one never copies data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "core/bf16.h"
#include "core/error.h"

namespace dtrain {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, u8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // throws ConfigError

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }

// Calls f(T{}) with T the C++ type of a floating dtype that the CPU kernels
// implement (f32 for training, f64 for gradient checks).
template <class F>
decltype(auto) dispatch_float(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default:
      throw InternalError(fmt::format("CPU kernels have no {} implementation", dtype_name(t)));
  }
}

struct Device {
  enum class Kind : uint8_t { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int i) { return {Kind::cuda, i}; }
  bool is_cpu() const { return kind == Kind::cpu; }
  bool operator==(const Device&) const = default;
  std::string str() const;
};

// A fixed-capacity shape: no heap allocation when views are made in a step.
class Shape {
 public:
  static constexpr int kMaxRank = 6;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[i < 0 ? i + rank_ : i]; }
  int64_t& operator[](int i) { return dims_[i < 0 ? i + rank_ : i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "(4, 64, 768)"
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  void push_back(int64_t d);

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

// Owns one device allocation. CPU memory is 64-byte aligned; `pinned` CPU
// memory is page-locked (core/device.h) for asynchronous copies to a GPU.
class Storage {
 public:
  Storage(size_t bytes, Device device, bool pinned = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  bool pinned_ = false;
};

class Tensor {
 public:
  Tensor() = default;
  // A new tensor with uninitialised contents.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  // A new tensor filled with zeros.
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  // A new host tensor in page-locked memory (staging for a GPU's copies).
  static Tensor pinned(const Shape& shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t size(int dim) const { return shape_[dim]; }
  int rank() const { return shape_.rank(); }
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device{}; }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  // The address of the first element, on whatever device holds it: for ops
  // and communicators that hand it to a device library.
  void* raw() const;
  // Host access: refuses a tensor that is not in host memory (only the CPU
  // kernels behind lib/ops and host-side code such as checkpoints read this).
  template <class T>
  T* data() const {
    DTRAIN_CHECK(dtype_of<T>() == dtype_, "tensor holds {}, asked for {}", dtype_name(dtype_),
                 dtype_name(dtype_of<T>()));
    DTRAIN_CHECK(device().is_cpu(), "host access to a tensor on {}", device().str());
    return static_cast<T*>(raw());
  }

  // Same storage, new shape with the same number of elements (contiguous).
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) of the first dimension.
  Tensor narrow0(int64_t begin, int64_t end) const;
  // A flat range of elements [begin, begin + count) as a 1-d tensor.
  Tensor flat_range(int64_t begin, int64_t count) const;

  // Synchronous on every device (complete on return); ops::zero and ops::copy
  // enqueue on an Exec's stream instead.
  void zero_();
  // Copies the contents of src (same numel and dtype, any two devices) into this tensor.
  void copy_from(const Tensor& src);
  // A host copy (the tensor itself when it is already in host memory).
  Tensor to_host() const;

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::f32;
};

}  // namespace dtrain
