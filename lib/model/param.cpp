#include "model/param.h"

#include <algorithm>

#include "core/rng.h"

namespace dtrain {

namespace {
constexpr int64_t kAlign = 16;  // elements: keeps every parameter 64-byte aligned in fp32
int64_t align_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Element i of a parameter is drawn at counter i (uniform) or 2i (normal: two
// draws each), so the values do not depend on how the loop is split.
template <class T>
void fill(const Param& p, uint64_t seed) {
  T* v = p.value.data<T>();
  const int64_t n = p.numel();
  const uint64_t key = hash_combine(seed, hash_string(p.name));
  const double scale = p.init.scale;
  switch (p.init.kind) {
    case Init::Kind::zeros: std::fill(v, v + n, T(0)); break;
    case Init::Kind::ones: std::fill(v, v + n, T(1)); break;
    case Init::Kind::normal:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) v[i] = static_cast<T>(scale * CounterRng(key, 2 * i).normal());
      break;
    case Init::Kind::uniform:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i)
        v[i] = static_cast<T>(scale * (2.0 * CounterRng(key, i).uniform() - 1.0));
      break;
  }
}
}  // namespace

Param& ParamStore::declare(const std::string& name, const Shape& shape, Init init, bool decay,
                           bool trainable) {
  DTRAIN_CHECK(!allocated(), "parameter {} declared after allocate()", name);
  DTRAIN_CHECK(find(name) == nullptr, "parameter {} declared twice", name);
  auto p = std::make_unique<Param>();
  p->name = name;
  p->shape = shape;
  p->init = init;
  p->decay = decay;
  p->trainable = trainable;
  params_.push_back(std::move(p));
  return *params_.back();
}

Param& ParamStore::add(const std::string& name, const Shape& shape, Init init, bool decay) {
  return declare(name, shape, init, decay, true);
}

Param& ParamStore::add_buffer(const std::string& name, const Shape& shape, Init init) {
  return declare(name, shape, init, false, false);
}

Param* ParamStore::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p->name == name) return p.get();
  return nullptr;
}

void ParamStore::allocate(DType dtype, Device device, uint64_t seed) {
  DTRAIN_CHECK(!allocated(), "ParamStore::allocate called twice");
  int64_t ntrain = 0, nbuf = 0;
  for (auto& p : params_) {
    int64_t& cursor = p->trainable ? ntrain : nbuf;
    p->offset = cursor;
    cursor += align_up(p->numel());
  }
  values_ = Tensor::zeros(Shape{ntrain}, dtype, device);
  grads_ = Tensor::zeros(Shape{ntrain}, dtype, device);
  buffers_ = Tensor::zeros(Shape{nbuf}, dtype, device);
  trainable_numel_ = 0;
  for (auto& p : params_) {
    Tensor& flat = p->trainable ? values_ : buffers_;
    p->value = flat.flat_range(p->offset, p->numel()).view(p->shape);
    if (p->trainable) {
      p->grad = grads_.flat_range(p->offset, p->numel()).view(p->shape);
      trainable_numel_ += p->numel();
    }
  }
  initialize(seed);
}

void ParamStore::initialize(uint64_t seed) {
  for (auto& p : params_)
    dispatch_float(p->value.dtype(), [&](auto t) { fill<decltype(t)>(*p, seed); });
}

}  // namespace dtrain
