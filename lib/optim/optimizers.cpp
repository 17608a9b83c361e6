// AdamW (Loshchilov & Hutter): Adam moments with bias correction, weight decay
// applied to the parameter directly (decoupled), matching torch.optim.AdamW;
// and SGD with momentum as torch.optim.SGD.
#include <algorithm>
#include <cmath>

#include <omp.h>

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

class AdamW : public Optimizer {
 public:
  AdamW(const OptimConfig& cfg, ParamStore& ps, FlatRange r) : cfg_(cfg), ps_(ps), r_(r) {
    m_ = state_tensor(ps, r);
    v_ = state_tensor(ps, r);
  }

  void step(double lr, double grad_scale) override {
    ++t_;
    const double bc1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(t_));
    const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(t_));
    dispatch_float(m_.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T b1 = static_cast<T>(cfg_.beta1), b2 = static_cast<T>(cfg_.beta2);
      const T step_size = static_cast<T>(lr / bc1);
      const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(bc2));
      const T eps = static_cast<T>(cfg_.eps);
      const T gs = static_cast<T>(grad_scale);
      // One parallel region over every element of the range, cut evenly
      // between the threads whatever the parameter boundaries (an element's
      // update does not depend on how the range is cut).
      spans_.clear();
      int64_t total = 0;
      for (const auto& p : ps_.all()) {
        if (!p->trainable) continue;
        const Overlap o = overlap(*p, r_);
        if (o.lo == o.hi) continue;
        spans_.push_back({p.get(), o.lo, o.hi - o.lo, p->offset + o.lo - r_.begin});
        total += o.hi - o.lo;
      }
      const T decay_on = static_cast<T>(1.0 - lr * cfg_.weight_decay);
#pragma omp parallel
      {
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int64_t lo = total * id / nt, hi = total * (id + 1) / nt;
        int64_t seen = 0;  // elements in the spans before this one
        for (const Span& sp : spans_) {
          const int64_t b = std::max(lo, seen) - seen, e = std::min(hi, seen + sp.n) - seen;
          seen += sp.n;
          if (b >= e) continue;
          T* w = sp.param->value.template data<T>() + sp.lo;
          const T* g = sp.param->grad.template data<T>() + sp.lo;
          T* m = m_.template data<T>() + sp.state;
          T* v = v_.template data<T>() + sp.state;
          const T decay = sp.param->decay ? decay_on : T(1);
#pragma omp simd
          for (int64_t i = b; i < e; ++i) {
            const T gi = g[i] * gs;
            m[i] = b1 * m[i] + (T(1) - b1) * gi;
            v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
            w[i] = w[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
          }
        }
      }
    });
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
  // The range's part of one parameter: elements [lo, lo + n) of it, whose
  // state starts at element `state` of m_ and v_.
  struct Span {
    const Param* param;
    int64_t lo, n, state;
  };
  std::vector<Span> spans_;  // rebuilt each step, its capacity kept
};

// SGD with momentum (PyTorch's formulation): weight decay added to the
// gradient (only where Param::decay), buf = momentum * buf + g, optional Nesterov.
class Sgd : public Optimizer {
 public:
  Sgd(const OptimConfig& cfg, ParamStore& ps, FlatRange r) : cfg_(cfg), ps_(ps), r_(r) {
    buf_ = state_tensor(ps, r);
  }

  void step(double lr, double grad_scale) override {
    const bool first = t_ == 0;
    ++t_;
    dispatch_float(buf_.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T mu = static_cast<T>(cfg_.momentum), rate = static_cast<T>(lr);
      const T gs = static_cast<T>(grad_scale);
      const bool nesterov = cfg_.nesterov;
      for (const auto& p : ps_.all()) {
        if (!p->trainable) continue;
        const Overlap o = overlap(*p, r_);
        if (o.lo == o.hi) continue;
        const T wd = static_cast<T>(p->decay ? cfg_.weight_decay : 0.0);
        T* w = p->value.template data<T>() + o.lo;
        const T* g = p->grad.template data<T>() + o.lo;
        T* b = buf_.template data<T>() + (p->offset + o.lo - r_.begin);
        const int64_t n = o.hi - o.lo;
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; ++i) {
          T d = g[i] * gs + wd * w[i];
          if (mu != T(0)) {
            b[i] = first ? d : mu * b[i] + d;
            d = nesterov ? d + mu * b[i] : b[i];
          }
          w[i] -= rate * d;
        }
      }
    });
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
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& cfg, ParamStore& params,
                                          FlatRange range) {
  DTRAIN_CHECK(params.allocated(), "optimizer built before parameters were allocated");
  const int64_t n = params.values().numel();
  if (range.end < 0) range.end = n;
  DTRAIN_CHECK(0 <= range.begin && range.begin <= range.end && range.end <= n,
               "optimizer range [{}, {}) of {} elements", range.begin, range.end, n);
  if (cfg.name == "adamw") return std::make_unique<AdamW>(cfg, params, range);
  if (cfg.name == "sgd") return std::make_unique<Sgd>(cfg, params, range);
  throw ConfigError(fmt::format("optim.name: unknown optimizer '{}' (expected adamw or sgd)", cfg.name));
}

}  // namespace dtrain
