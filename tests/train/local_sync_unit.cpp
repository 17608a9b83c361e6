// The outer optimizer of parallel.sync = "local" (train/local_sync.h) on one
// replica, against a double-precision reference of PyTorch's SGD with
// Nesterov momentum on the outer gradient (anchor - parameters): the sync
// schedule, plain averaging, and the evaluation swap's exact round trip. The
// mean over replicas and checkpoints run under mpirun in tests/apps/local_sgd.sh.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/comm.h"
#include "core/exec.h"
#include "model/param.h"
#include "train/local_sync.h"

using namespace dtrain;

namespace {

ParallelConfig local_config(const char* outer, double lr, double mu, int64_t every) {
  ParallelConfig c{};
  c.sync = "local";
  c.sync_every = every;
  c.outer_optim = outer;
  c.outer_lr = lr;
  c.outer_momentum = mu;
  return c;
}

// The replica's inner steps of period k: a deterministic change of every element.
void inner_steps(ParamStore& ps, int k) {
  float* v = ps.values().data<float>();
  for (int64_t i = 0; i < ps.values().numel(); ++i) v[i] += 0.01f * std::sin(static_cast<float>(3 * i + k + 1));
}

}  // namespace

TEST_CASE("local sync: the schedule is every sync_every steps and the last") {
  ParamStore ps;
  ps.add("w", Shape{4}, Init::normal(1.0), true);
  ps.allocate(DType::f32, Device::cpu(), 1);
  auto dp = make_self_communicator("dp");
  LocalSync ls(ps, *dp, local_config("average", 1.0, 0.9, 3), Exec::cpu());
  std::vector<int64_t> due;
  for (int64_t s = 0; s < 10; ++s)
    if (ls.due(s, 10)) due.push_back(s);
  CHECK(due == std::vector<int64_t>{2, 5, 8, 9});
  CHECK_FALSE(ls.momentum().defined());  // average: no outer momentum
}

TEST_CASE("local sync: nesterov outer steps match PyTorch's SGD(nesterov=True) in double") {
  ParamStore ps;
  ps.add("a", Shape{3, 5}, Init::normal(0.5), true);
  ps.add("b", Shape{7}, Init::normal(0.5), false);
  ps.allocate(DType::f32, Device::cpu(), 7);
  auto dp = make_self_communicator("dp");
  const double lr = 0.7, mu = 0.9;
  LocalSync ls(ps, *dp, local_config("nesterov", lr, mu, 4), Exec::cpu());
  const int64_t n = ps.values().numel();
  std::vector<double> anchor(n), buf(n, 0.0);
  for (int64_t i = 0; i < n; ++i) anchor[i] = ps.values().data<float>()[i];
  for (int k = 0; k < 5; ++k) {
    inner_steps(ps, k);
    const float* v = ps.values().data<float>();
    for (int64_t i = 0; i < n; ++i) {  // torch: buf = mu buf + g (buf = g first); p -= lr (g + mu buf)
      const double g = anchor[i] - v[i];
      buf[i] = k == 0 ? g : mu * buf[i] + g;
      anchor[i] -= lr * (g + mu * buf[i]);
    }
    ls.sync();
    for (int64_t i = 0; i < n; ++i) {
      CHECK(ps.values().data<float>()[i] == ls.anchor().data<float>()[i]);  // the replica continues from it
      CHECK(std::abs(ls.anchor().data<float>()[i] - anchor[i]) <= 1e-6 * (1 + std::abs(anchor[i])));
      CHECK(std::abs(-ls.momentum().data<float>()[i] - buf[i]) <= 1e-6 * (1 + std::abs(buf[i])));
    }
  }
  CHECK(ls.syncs() == 5);
}

TEST_CASE("local sync: plain averaging on one replica keeps its parameters, the swap round-trips exactly") {
  ParamStore ps;
  ps.add("w", Shape{64}, Init::normal(1.0), true);
  ps.allocate(DType::f32, Device::cpu(), 3);
  auto dp = make_self_communicator("dp");
  LocalSync ls(ps, *dp, local_config("average", 1.0, 0.9, 2), Exec::cpu());
  const std::vector<float> start(ps.values().data<float>(), ps.values().data<float>() + 64);
  inner_steps(ps, 0);
  const std::vector<float> moved(ps.values().data<float>(), ps.values().data<float>() + 64);
  // Mid-period the anchor is the start; evaluation swaps it in and back.
  ls.swap_in_anchor();
  CHECK(std::vector<float>(ps.values().data<float>(), ps.values().data<float>() + 64) == start);
  ls.swap_back();
  CHECK(std::vector<float>(ps.values().data<float>(), ps.values().data<float>() + 64) == moved);
  // The mean of one replica's change is its change: its parameters, exactly.
  ls.sync();
  CHECK(std::vector<float>(ps.values().data<float>(), ps.values().data<float>() + 64) == moved);
  CHECK(std::vector<float>(ls.anchor().data<float>(), ls.anchor().data<float>() + 64) == moved);
  // With an outer lr the anchor moves by lr x the change (one rounding per operation).
  LocalSync half(ps, *dp, local_config("average", 0.5, 0.9, 2), Exec::cpu());
  inner_steps(ps, 1);
  const std::vector<float> moved2(ps.values().data<float>(), ps.values().data<float>() + 64);
  half.sync();
  for (int i = 0; i < 64; ++i) {
    const double want = moved[i] + 0.5 * (static_cast<double>(moved2[i]) - moved[i]);
    CHECK(std::abs(ps.values().data<float>()[i] - want) <= 1e-6 * (1 + std::abs(want)));
  }
}
