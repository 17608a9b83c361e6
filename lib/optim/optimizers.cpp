// AdamW (Loshchilov & Hutter): Adam moments with bias correction, weight decay
// applied to the parameter directly (decoupled), matching torch.optim.AdamW;
// and SGD with momentum as torch.optim.SGD.
#include <cmath>

#include "optim/optimizer.h"

namespace dtrain {

namespace {

class AdamW : public Optimizer {
 public:
  AdamW(const OptimConfig& cfg, ParamStore& ps) : cfg_(cfg), ps_(ps) {
    m_ = Tensor::zeros(ps.values().shape(), ps.values().dtype(), ps.values().device());
    v_ = Tensor::zeros(ps.values().shape(), ps.values().dtype(), ps.values().device());
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
      for (const auto& p : ps_.all()) {
        if (!p->trainable) continue;
        const T decay = static_cast<T>(p->decay ? 1.0 - lr * cfg_.weight_decay : 1.0);
        T* w = p->value.template data<T>();
        const T* g = p->grad.template data<T>();
        T* m = m_.template data<T>() + p->offset;
        T* v = v_.template data<T>() + p->offset;
        const int64_t n = p->numel();
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; ++i) {
          const T gi = g[i] * gs;
          m[i] = b1 * m[i] + (T(1) - b1) * gi;
          v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
          w[i] = w[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
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
  Tensor m_, v_;
  int64_t t_ = 0;
};

// SGD with momentum (PyTorch's formulation): weight decay added to the
// gradient (only where Param::decay), buf = momentum * buf + g, optional Nesterov.
class Sgd : public Optimizer {
 public:
  Sgd(const OptimConfig& cfg, ParamStore& ps) : cfg_(cfg), ps_(ps) {
    buf_ = Tensor::zeros(ps.values().shape(), ps.values().dtype(), ps.values().device());
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
        const T wd = static_cast<T>(p->decay ? cfg_.weight_decay : 0.0);
        T* w = p->value.template data<T>();
        const T* g = p->grad.template data<T>();
        T* b = buf_.template data<T>() + p->offset;
        const int64_t n = p->numel();
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
  Tensor buf_;
  int64_t t_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& cfg, ParamStore& params) {
  DTRAIN_CHECK(params.allocated(), "optimizer built before parameters were allocated");
  if (cfg.name == "adamw") return std::make_unique<AdamW>(cfg, params);
  if (cfg.name == "sgd") return std::make_unique<Sgd>(cfg, params);
  throw ConfigError(fmt::format("optim.name: unknown optimizer '{}' (expected adamw or sgd)", cfg.name));
}

}  // namespace dtrain
