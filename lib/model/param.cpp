#include "model/param.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/rng.h"
#include "ops/ops.h"

namespace dtrain {

namespace {
constexpr int64_t kAlign = 16;  // elements: keeps every parameter 64-byte aligned in fp32
int64_t align_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Element i of the full tensor is drawn at counter i (uniform) or 2i (normal:
// two draws each), so the values depend neither on how the loop is split nor
// on which part of a sharded tensor this rank holds.
template <class T>
void fill(const Param& p, uint64_t seed) {
  T* v = p.value.data<T>();
  const int64_t n = p.numel();
  const uint64_t key = hash_combine(seed, hash_string(p.name));
  const double scale = p.init.scale;
  const Shard& sh = p.shard;
  switch (p.init.kind) {
    case Init::Kind::zeros: std::fill(v, v + n, T(0)); break;
    case Init::Kind::ones: std::fill(v, v + n, T(1)); break;
    case Init::Kind::normal:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i)
        v[i] = static_cast<T>(scale * CounterRng(key, 2 * sh.global_index(i)).normal());
      break;
    case Init::Kind::uniform:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i)
        v[i] = static_cast<T>(scale * (2.0 * CounterRng(key, sh.global_index(i)).uniform() - 1.0));
      break;
  }
}

// Sizes around the split dimension: outer (before), rows (along), inner (after).
struct Split {
  int64_t outer = 1, full_rows = 1, inner = 1;
};
Split split_of(const Shard& s) {
  Split r;
  for (int d = 0; d < s.full.rank(); ++d) {
    if (d < s.dim) r.outer *= s.full[d];
    else if (d == s.dim) r.full_rows = s.full[d];
    else r.inner *= s.full[d];
  }
  return r;
}

}  // namespace

Shape Shard::local_shape() const {
  Shape s = full;
  if (split()) s[dim] = full[dim] / parts;
  return s;
}

std::vector<int64_t> Shard::block_sizes() const {
  if (!blocks.empty()) return blocks;
  return {split() ? full[dim] : (full.rank() ? full[0] : 1)};
}

int64_t Shard::global_index(int64_t i) const {
  if (!split()) return i;
  const Split sp = split_of(*this);
  const int64_t local_rows = sp.full_rows / parts;  // rows held here, all blocks
  const int64_t r = i % sp.inner, row = i / sp.inner % local_rows, o = i / (sp.inner * local_rows);
  // The block holding local row `row` (of at most three; no allocation: init calls this per element).
  int64_t full_row = row, full_start = 0, local_start = 0;
  const size_t n = blocks.empty() ? 1 : blocks.size();
  for (size_t k = 0; k < n; ++k) {
    const int64_t block = blocks.empty() ? sp.full_rows : blocks[k], piece = block / parts;
    if (row < local_start + piece) {
      full_row = full_start + index * piece + (row - local_start);
      break;
    }
    full_start += block;
    local_start += piece;
  }
  return (o * sp.full_rows + full_row) * sp.inner + r;
}

std::vector<Shard::Run> Shard::runs() const {
  if (!split()) return {Run{0, 0, full.rank() ? full[0] : 1}};
  std::vector<Run> out;
  int64_t full_start = 0, local_start = 0;
  for (int64_t block : block_sizes()) {
    const int64_t piece = block / parts;
    out.push_back(Run{full_start + index * piece, local_start, piece});
    full_start += block;
    local_start += piece;
  }
  return out;
}

namespace {
void check_shard(const std::string& name, const Shard& s) {
  DTRAIN_CHECK(s.dim < s.full.rank() && s.parts >= 1 && 0 <= s.index && s.index < s.parts &&
                   (s.split() || s.blocks.empty()),
               "{}: bad shard (dim {}, {} parts, index {}, {} blocks) of {}", name, s.dim, s.parts, s.index,
               s.blocks.size(), s.full.str());
  if (!s.split()) return;
  int64_t total = 0;
  bool even = true;
  for (int64_t b : s.block_sizes()) {
    total += b;
    even = even && b > 0 && b % s.parts == 0;
  }
  DTRAIN_CHECK(total == s.full[s.dim] && even,
               "{}: dimension {} of {} does not split into blocks [{}] of {} parts each", name, s.dim, s.full.str(),
               fmt::join(s.block_sizes(), ", "), s.parts);
}
}  // namespace

Param& ParamStore::declare(const std::string& name, const Shape& shape, const Shard& shard,
                           Init init, bool decay, bool trainable) {
  DTRAIN_CHECK(!allocated(), "parameter {} declared after allocate()", name);
  DTRAIN_CHECK(find(name) == nullptr, "parameter {} declared twice", name);
  check_shard(name, shard);
  auto p = std::make_unique<Param>();
  p->name = name;
  p->shape = shape;
  p->shard = shard;
  p->init = init;
  p->decay = decay;
  p->trainable = trainable;
  by_name_.emplace(name, p.get());
  params_.push_back(std::move(p));
  return *params_.back();
}

namespace {
Shard whole(const Shape& shape) {
  Shard s;
  s.full = shape;
  return s;
}
}  // namespace

Param& ParamStore::add(const std::string& name, const Shape& shape, Init init, bool decay) {
  return declare(name, shape, whole(shape), init, decay, true);
}

Param& ParamStore::add_sharded(const std::string& name, const Shard& shard, Init init, bool decay) {
  return declare(name, shard.local_shape(), shard, init, decay, true);
}

Param& ParamStore::add_buffer(const std::string& name, const Shape& shape, Init init) {
  return declare(name, shape, whole(shape), init, false, false);
}

Param* ParamStore::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

void ParamStore::allocate(DType compute, const Exec& ex, std::optional<uint64_t> seed, bool grads) {
  const DType dtype = compute == DType::bf16 ? DType::f32 : compute;  // the masters
  exec_ = ex;
  const Device device = ex.device;
  DTRAIN_CHECK(!allocated(), "ParamStore::allocate called twice");
  int64_t ntrain = 0, nbuf = 0;
  for (auto& p : params_) {
    int64_t& cursor = p->trainable ? ntrain : nbuf;
    p->offset = cursor;
    cursor += align_up(p->numel());
  }
  values_ = Tensor::zeros(Shape{ntrain}, dtype, device);
  master_dtype_ = dtype;
  flat_numel_ = ntrain;
  if (grads) grads_ = Tensor::zeros(Shape{ntrain}, dtype, device);
  buffers_ = Tensor::zeros(Shape{nbuf}, dtype, device);
  compute_ = compute == dtype ? values_ : Tensor::zeros(Shape{ntrain}, compute, device);
  trainable_numel_ = 0;
  for (auto& p : params_) {
    Tensor& flat = p->trainable ? values_ : buffers_;
    p->value = flat.flat_range(p->offset, p->numel()).view(p->shape);
    p->compute = p->trainable ? compute_.flat_range(p->offset, p->numel()).view(p->shape) : p->value;
    if (p->trainable) {
      if (grads) p->grad = grads_.flat_range(p->offset, p->numel()).view(p->shape);
      trainable_numel_ += p->numel();
    }
  }
  if (seed) initialize(*seed);  // else every value, and its compute copy, stays zero until loaded
}

void ParamStore::share(const ParamStore& owner, bool subset) {
  DTRAIN_CHECK(!allocated() && owner.allocated(), "ParamStore::share needs a fresh store and an allocated owner");
  DTRAIN_CHECK(subset ? params_.size() <= owner.params_.size() : params_.size() == owner.params_.size(),
               "shared stores declare {} and {} parameters",
               params_.size(), owner.params_.size());
  for (auto& p : params_) {
    const Param* o = owner.find(p->name);
    DTRAIN_CHECK(o && o->shape == p->shape && o->trainable == p->trainable,
                 "parameter {} {} has no match in the shared store", p->name, p->shape.str());
    p->offset = o->offset;
    p->value = o->value;
    p->compute = o->compute;
    p->grad = o->grad;
  }
  exec_ = owner.exec_;
  values_ = owner.values_;
  master_dtype_ = owner.master_dtype_;
  compute_ = owner.compute_;
  grads_ = owner.grads_;
  buffers_ = owner.buffers_;
  trainable_numel_ = owner.trainable_numel_;
  flat_numel_ = owner.flat_numel_;
}

void ParamStore::initialize(uint64_t seed) {
  if (values_.device().is_cpu()) {
    for (auto& p : params_)
      dispatch_float(p->value.dtype(), [&](auto t) { fill<decltype(t)>(*p, seed); });
  } else {  // drawn into host copies of the flat buffers, then uploaded
    Tensor hv = Tensor::zeros(values_.shape(), values_.dtype());
    Tensor hb = Tensor::zeros(buffers_.shape(), buffers_.dtype());
    for (auto& p : params_) {
      Param host = *p;
      host.value = (p->trainable ? hv : hb).flat_range(p->offset, p->numel()).view(p->shape);
      dispatch_float(host.value.dtype(), [&](auto t) { fill<decltype(t)>(host, seed); });
    }
    values_.copy_from(hv);
    if (buffers_.numel()) buffers_.copy_from(hb);
  }
  sync_compute();
}

void ParamStore::sync_compute() {
  if (mixed()) ops::convert(exec_, values_, compute_);
}

void ParamStore::sync_compute(int64_t begin, int64_t end) {
  DTRAIN_CHECK(0 <= begin && begin <= end && end <= values_.numel(), "sync_compute [{}, {}) of {}", begin, end,
               values_.numel());
  if (mixed() && end > begin)
    ops::convert(exec_, values_.flat_range(begin, end - begin), compute_.flat_range(begin, end - begin));
}

void ParamStore::release_values() {
  values_ = Tensor{};
  compute_ = Tensor{};
  for (auto& p : params_)
    if (p->trainable) p->value = Tensor{};
}

void ParamStore::release_masters() {
  values_ = Tensor{};
  for (auto& p : params_)
    if (p->trainable) p->value = Tensor{};
}

void ParamStore::adopt_values(const Tensor& values) {
  DTRAIN_CHECK(values.numel() == flat_numel_, "adopt_values: {} elements for a flat buffer of {}", values.numel(),
               flat_numel_);
  values_ = values;
  for (auto& p : params_)
    if (p->trainable) p->value = values_.flat_range(p->offset, p->numel()).view(p->shape);
}

void ParamStore::zero_grads() {
  if (!grads_.defined() || grads_.numel() == 0) return;
  ops::zero(exec_, grads_);
}

}  // namespace dtrain
