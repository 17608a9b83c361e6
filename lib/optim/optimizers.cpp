// AdamW (Loshchilov & Hutter): Adam moments with bias correction, weight decay
// applied to the parameter directly (decoupled), matching torch.optim.AdamW;
// and SGD with momentum as torch.optim.SGD.
#include <algorithm>
#include <cmath>


#include "ops/optim.h"
#include "optim/optimizer.h"

namespace dtrain {

namespace {

// The part of parameter p inside range r: elements [lo, hi) of p (local
// indices), or lo == hi when they do not meet.
struct Overlap {
  int64_t lo = 0, hi = 0;
};
Overlap overlap(const Param& p, FlatRange r) {
  Overlap o;
  o.lo = std::max<int64_t>(0, r.begin - p.offset);
  o.hi = std::min<int64_t>(p.numel(), r.end - p.offset);
  if (o.hi < o.lo) o.hi = o.lo;
  return o;
}

Tensor state_tensor(ParamStore& ps, FlatRange r) {
  return Tensor::zeros(Shape{r.end - r.begin}, ps.values().dtype(), ps.values().device());
}

// This rank's spans of the flat buffer: the part of each trainable parameter
// inside r, with its optimizer state at the same offsets (from r.begin) and,
// under mixed precision, its compute copy, which the update writes too.
// The range's gradients, masters and compute copy come from the ZeRO shards
// where those are defined.
struct RangeShards {
  Tensor g, w, wc;
};
std::vector<ops::UpdateSpan> spans_of(ParamStore& ps, FlatRange r, const Tensor& s1, const Tensor& s2,
                                      const RangeShards& sh) {
  std::vector<ops::UpdateSpan> spans;
  const bool mixed = ps.mixed();
  for (const auto& p : ps.all()) {
    if (!p->trainable) continue;
    const Overlap o = overlap(*p, r);
    if (o.lo == o.hi) continue;
    const int64_t n = o.hi - o.lo, state = p->offset + o.lo - r.begin;
    auto part = [&](const Tensor& t) { return t.view(Shape{t.numel()}).flat_range(o.lo, n); };
    ops::UpdateSpan sp;
    sp.w = sh.w.defined() ? sh.w.flat_range(state, n) : part(p->value);
    sp.g = sh.g.defined() ? sh.g.flat_range(state, n) : part(p->grad);
    sp.s1 = s1.flat_range(state, n);
    if (s2.defined()) sp.s2 = s2.flat_range(state, n);
    if (mixed) sp.wc = sh.wc.defined() ? sh.wc.flat_range(state, n) : part(p->compute);
    sp.decay = p->decay;
    spans.push_back(sp);
  }
  return spans;
}

// Whether the spans' gradients are the whole flat gradient buffer (the
// parameters' own views, every element once).
bool covers_all(ParamStore& ps, const std::vector<ops::UpdateSpan>& spans, const Tensor& gs) {
  if (gs.defined() || !ps.grads().defined()) return false;
  int64_t n = 0;
  for (const ops::UpdateSpan& s : spans) n += s.g.numel();
  return n == ps.grads().numel();
}

class AdamW : public Optimizer {
 public:
  AdamW(const OptimConfig& cfg, ParamStore& ps, FlatRange r, const RangeShards& gs) : cfg_(cfg), ps_(ps), r_(r) {
    m_ = state_tensor(ps, r);
    v_ = state_tensor(ps, r);
    spans_ = spans_of(ps_, r_, m_, v_, gs);  // views: made once, valid for the run
    all_grads_ = covers_all(ps_, spans_, gs.g);
  }

  bool zeroes_all_grads() const override { return all_grads_; }

  void step(double lr, double grad_scale, bool zero_grads) override {
    ++t_;
    ops::AdamWArgs a;
    a.beta1 = cfg_.beta1;
    a.beta2 = cfg_.beta2;
    a.eps = cfg_.eps;
    a.weight_decay = cfg_.weight_decay;
    a.lr = lr;
    a.t = t_;
    a.grad_scale = grad_scale;
    a.zero_grads = zero_grads;
    ops::adamw_update(ps_.exec(), a, spans_);
  }

  std::vector<std::pair<std::string, Tensor>> state() override {
    return {{"adamw.m", m_}, {"adamw.v", v_}};
  }
  int64_t steps_done() const override { return t_; }
  void set_steps_done(int64_t n) override { t_ = n; }

 private:
  OptimConfig cfg_;
  ParamStore& ps_;
  FlatRange r_;
  Tensor m_, v_;
  int64_t t_ = 0;
  std::vector<ops::UpdateSpan> spans_;
  bool all_grads_ = false;
};

// SGD with momentum (PyTorch's formulation): weight decay added to the
// gradient (only where Param::decay), buf = momentum * buf + g, optional Nesterov.
class Sgd : public Optimizer {
 public:
  Sgd(const OptimConfig& cfg, ParamStore& ps, FlatRange r, const RangeShards& gs) : cfg_(cfg), ps_(ps), r_(r) {
    buf_ = state_tensor(ps, r);
    spans_ = spans_of(ps_, r_, buf_, Tensor{}, gs);
    all_grads_ = covers_all(ps_, spans_, gs.g);
  }

  bool zeroes_all_grads() const override { return all_grads_; }

  void step(double lr, double grad_scale, bool zero_grads) override {
    ops::SgdArgs a;
    a.momentum = cfg_.momentum;
    a.weight_decay = cfg_.weight_decay;
    a.lr = lr;
    a.grad_scale = grad_scale;
    a.nesterov = cfg_.nesterov;
    a.first = t_ == 0;
    a.zero_grads = zero_grads;
    ++t_;
    ops::sgd_update(ps_.exec(), a, spans_);
  }

  std::vector<std::pair<std::string, Tensor>> state() override { return {{"sgd.momentum", buf_}}; }
  int64_t steps_done() const override { return t_; }
  void set_steps_done(int64_t n) override { t_ = n; }

 private:
  OptimConfig cfg_;
  ParamStore& ps_;
  FlatRange r_;
  Tensor buf_;
  int64_t t_ = 0;
  std::vector<ops::UpdateSpan> spans_;
  bool all_grads_ = false;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& cfg, ParamStore& params,
                                          FlatRange range, const Tensor& grad_shard, const Tensor& value_shard,
                                          const Tensor& compute_shard) {
  DTRAIN_CHECK(params.allocated(), "optimizer built before parameters were allocated");
  const int64_t n = params.values().numel();
  if (range.end < 0) range.end = n;
  DTRAIN_CHECK(0 <= range.begin && range.begin <= range.end && range.end <= n,
               "optimizer range [{}, {}) of {} elements", range.begin, range.end, n);
  DTRAIN_CHECK(!grad_shard.defined() || grad_shard.numel() == range.end - range.begin,
               "optimizer gradient shard of {} elements for a range of {}", grad_shard.numel(), range.end - range.begin);
  for (const Tensor* t : {&value_shard, &compute_shard})
    DTRAIN_CHECK(!t->defined() || t->numel() == range.end - range.begin,
                 "optimizer parameter shard of {} elements for a range of {}", t->numel(), range.end - range.begin);
  const RangeShards sh{grad_shard, value_shard, compute_shard};
  if (cfg.name == "adamw") return std::make_unique<AdamW>(cfg, params, range, sh);
  if (cfg.name == "sgd") return std::make_unique<Sgd>(cfg, params, range, sh);
  throw ConfigError(fmt::format("optim.name: unknown optimizer '{}' (expected adamw or sgd)", cfg.name));
}

}  // namespace dtrain
