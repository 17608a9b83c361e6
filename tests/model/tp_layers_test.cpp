// Tensor-parallel layers one at a time, on t threads of one process: each
// backward against finite differences of the loss summed over the group, and
// the vocabulary-parallel cross-entropy against the unsplit one (ties too).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "gradcheck.h"
#include "model/attention.h"
#include "model/block.h"
#include "model/cross_entropy.h"
#include "model/embedding.h"
#include "model/linear.h"
#include "model/lm_head.h"
#include "model/mlp.h"
#include "model/vocab_parallel_cross_entropy.h"
#include "thread_comm.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

// The sum of x over the group (every member gets it).
double group_sum(Communicator& comm, double x) {
  Tensor t = Tensor::empty(Shape{1}, DType::f64);
  t.data<double>()[0] = x;
  all_reduce(comm, t);
  return t.data<double>()[0];
}

// Checks `analytic` against central differences of the group's loss() (a
// collective: every member calls it the same number of times). A sharded
// tensor is a different part of the model on each member, so its owner
// perturbs it alone, one member after another; a replicated one is one
// parameter held by every member, so all perturb their copies together.
void tp_check_gradient(const std::string& what, Communicator& comm, bool sharded, const Tensor& x,
                       const Tensor& analytic, const std::function<double()>& loss,
                       GradCheckOptions o = {}) {
  const int64_t n = x.numel();
  const int64_t samples = std::min<int64_t>(n, o.max_samples);
  double* v = x.data<double>();
  const double* a = analytic.data<double>();
  const double floor =
      std::max(o.atol, 256 * std::numeric_limits<double>::epsilon() * std::abs(loss()) / o.eps);
  for (int owner = 0; owner < (sharded ? comm.size() : 1); ++owner) {
    const bool mine = !sharded || owner == comm.rank();
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t i = samples == 1 ? 0 : s * (n - 1) / (samples - 1);
      const double keep = v[i];
      if (mine) v[i] = keep + o.eps;
      const double lp = loss();
      if (mine) v[i] = keep - o.eps;
      const double lm = loss();
      if (mine) v[i] = keep;
      if (!mine) continue;
      const double numeric = (lp - lm) / (2 * o.eps);
      const double err = std::abs(a[i] - numeric);
      const double ref = std::max(std::abs(a[i]), std::abs(numeric));
      INFO(what, "[", i, "] on rank ", comm.rank(), ": analytic ", a[i], " numeric ", numeric);
      CHECK(err <= o.rtol * ref + floor);
    }
  }
}

// A layer through L = <y, R> (the same on every member) for a replicated
// output, or the group's sum of <y_r, R_r> for a sharded one.
void tp_check_layer(Layer& layer, ParamStore& ps, const Tensor& x, const Ctx& ctx,
                    Communicator& comm, bool x_sharded, bool y_sharded, uint64_t seed,
                    GradCheckOptions o = {}) {
  Tensor r = random_tensor(layer.output_shape(x.shape()), y_sharded ? seed + 100 * comm.rank() : seed);
  auto loss = [&] {
    const double l = dot(layer.forward(x, ctx), r);
    return y_sharded ? group_sum(comm, l) : l;
  };
  loss();
  Tensor dx = layer.backward(r, ctx);
  if (x.dtype() == DType::f64) {
    Tensor dxc = clone(dx);
    CHECK(max_abs(dxc) > 0);
    tp_check_gradient(layer.name() + " input", comm, x_sharded, x, dxc, loss, o);
  }
  for (const auto& p : ps.all()) {
    Tensor g = clone(p->grad);
    INFO("parameter ", p->name);
    CHECK(max_abs(g) > 0);
    tp_check_gradient(p->name, comm, p->shard.split(), p->value, g, loss, o);
  }
}

}  // namespace

TEST_CASE("tp layers: backward matches finite differences of the group's loss (t = 2, 4)") {
  for (int t : {2, 4}) {
    CAPTURE(t);
    run_ranks(t, [&](Communicator& comm, int rank) {
      const int64_t B = 2, T = 5, C = 8;
      Ctx ctx{.training = true, .seed = 5, .step = 1, .sample_offset = 0};
      const Tensor x = random_tensor(Shape{B, T, C}, 3);  // replicated input
      {
        // Column-parallel with fused Q|K|V blocks: replicated input, sharded output.
        ParamStore ps;
        Linear lin(ps, "qkv", C, 3 * C, true, Init::normal(0.3), Init::normal(0.1),
                   {.split = TpSplit::column, .tp = &comm, .blocks = {C, C, C}});
        ps.allocate(DType::f64, Device::cpu(), 1);
        CHECK(lin.out_features() == 3 * C / t);
        CHECK(ps.find("qkv.bias")->shard.split());
        lin.plan(x.shape(), DType::f64, Exec::cpu());
        tp_check_layer(lin, ps, clone(x), ctx, comm, false, true, 4);
      }
      {
        // Row-parallel: sharded input, replicated output, replicated bias.
        ParamStore ps;
        Linear lin(ps, "proj", 2 * C, C, true, Init::normal(0.3), Init::normal(0.1),
                   {.split = TpSplit::row, .tp = &comm, .blocks = {}});
        ps.allocate(DType::f64, Device::cpu(), 1);
        CHECK(lin.in_features() == 2 * C / t);
        CHECK_FALSE(ps.find("proj.bias")->shard.split());
        const Tensor xs = random_tensor(Shape{B, T, 2 * C / t}, 30 + rank);
        lin.plan(xs.shape(), DType::f64, Exec::cpu());
        tp_check_layer(lin, ps, xs, ctx, comm, true, false, 4);
      }
      {
        ParamStore ps;
        CausalSelfAttention attn(ps, "attn", C, 4, true, 0.1, &comm);
        ps.allocate(DType::f64, Device::cpu(), 1);
        perturb_params(ps, 2, 0.4);
        attn.plan(x.shape(), DType::f64, Exec::cpu());
        tp_check_layer(attn, ps, clone(x), ctx, comm, false, false, 4, {.max_samples = 10});
      }
      {
        ParamStore ps;
        Mlp mlp(ps, "mlp", C, true, 0.1, &comm);
        ps.allocate(DType::f64, Device::cpu(), 1);
        perturb_params(ps, 2, 0.4);
        mlp.plan(x.shape(), DType::f64, Exec::cpu());
        tp_check_layer(mlp, ps, clone(x), ctx, comm, false, false, 4, {.max_samples = 10});
      }
      {
        ParamStore ps;
        Block block(ps, "blocks.0", BlockSpec{.c = C, .n_head = 4, .bias = true, .dropout = 0.2, .proj_std = 0.05}, &comm);
        ps.allocate(DType::f64, Device::cpu(), 1);
        perturb_params(ps, 2, 0.3);
        block.plan(x.shape(), DType::f64, Exec::cpu());
        tp_check_layer(block, ps, clone(x), ctx, comm, false, false, 4, {.max_samples = 8});
      }
      {
        // Vocabulary-parallel embedding; tokens from every rank's range, repeated.
        const int64_t V = 12;
        ParamStore ps;
        TokenPositionEmbedding emb(ps, "embed", V, T, C, 0.0, &comm);
        ps.allocate(DType::f64, Device::cpu(), 1);
        CHECK(ps.find("wte.weight")->shape == Shape{V / t, C});
        Tensor tok = Tensor::empty(Shape{B, T}, DType::i32);
        for (int64_t i = 0; i < B * T; ++i) tok.data<int32_t>()[i] = static_cast<int32_t>((i * 5) % V);
        emb.plan(tok.shape(), DType::f64, Exec::cpu());
        tp_check_layer(emb, ps, tok, ctx, comm, false, false, 4, {.max_samples = 30});
      }
      {
        // The tied head on a wte shard: replicated input, sharded logits.
        const int64_t V = 12;
        ParamStore ps;
        Param& wte = ps.add_sharded("wte.weight", TokenPositionEmbedding::vocab_shard(V, C, comm),
                                    Init::normal(0.5), true);
        LmHead head("lm_head", wte, &comm);
        ps.allocate(DType::f64, Device::cpu(), 1);
        head.plan(x.shape(), DType::f64, Exec::cpu());
        CHECK(head.output_shape(x.shape()) == Shape{B, T, V / t});
        tp_check_layer(head, ps, clone(x), ctx, comm, false, true, 4, {.max_samples = 20});
      }
      {
        // Vocabulary-parallel cross-entropy: the loss is the group's; each
        // rank's logits are its own.
        const int64_t V = 12, rows = 6;
        VocabParallelCrossEntropyLoss ce(comm, V);
        Tensor logits = random_tensor(Shape{rows, V / t}, 40 + rank, 2.0);
        Tensor y = Tensor::empty(Shape{rows}, DType::i32);
        for (int64_t i = 0; i < rows; ++i) y.data<int32_t>()[i] = static_cast<int32_t>((i * 7) % V);
        ce.plan(logits.shape(), DType::f64, Exec::cpu());
        auto loss = [&] { return ce.forward(logits, y).loss; };
        loss();
        const double scale = 0.5;
        Tensor g = clone(ce.backward(scale));
        for (int64_t i = 0; i < g.numel(); ++i) g.data<double>()[i] /= scale;
        tp_check_gradient("vocab-parallel cross entropy", comm, true, logits, g, loss,
                          {.max_samples = 36});
      }
    });
  }
}

TEST_CASE("vocab-parallel cross-entropy over the used ids: the padding never predicted, on every split") {
  // V = 8 of which 5 are used: at t = 4 rank 2 holds one used id and rank 3
  // only padding (its local maxima -inf until the all-reduce). Against the
  // unsplit loss over the 5 used columns; the padding's gradient exactly 0.
  const int64_t rows = 6, V = 8, used = 5;
  Tensor full = random_tensor(Shape{rows, V}, 3, 2.0);
  Tensor narrow = Tensor::empty(Shape{rows, used}, DType::f64);
  for (int64_t r = 0; r < rows; ++r) {
    full.data<double>()[r * V + 6] = 40.0;  // a padding logit above every used one
    for (int64_t j = 0; j < used; ++j) narrow.data<double>()[r * used + j] = full.data<double>()[r * V + j];
  }
  Tensor y = Tensor::empty(Shape{rows}, DType::i32);
  for (int64_t r = 0; r < rows; ++r) y.data<int32_t>()[r] = static_cast<int32_t>((r * 2) % used);
  CrossEntropyLoss ref;
  ref.plan(narrow.shape(), DType::f64, Exec::cpu());
  const LossStats want = ref.forward(narrow, y);
  Tensor dref = clone(ref.backward(0.5));
  for (int t : {1, 2, 4}) {
    CAPTURE(t);
    std::mutex mu;
    std::vector<LossStats> got(t);
    run_ranks(t, [&](Communicator& comm, int rank) {
      const int64_t v = V / t;
      Tensor mine = Tensor::empty(Shape{rows, v}, DType::f64);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < v; ++j) mine.data<double>()[r * v + j] = full.data<double>()[r * V + rank * v + j];
      VocabParallelCrossEntropyLoss ce(comm, V, used);
      ce.plan(mine.shape(), DType::f64, Exec::cpu());
      const LossStats st = ce.forward(mine, y);
      Tensor d = ce.backward(0.5);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < v; ++j) {
          const int64_t id = rank * v + j;
          if (id < used)
            CHECK(d.data<double>()[r * v + j] == doctest::Approx(dref.data<double>()[r * used + id]).epsilon(1e-13));
          else
            CHECK(d.data<double>()[r * v + j] == 0.0);
        }
      std::lock_guard<std::mutex> lock(mu);
      got[rank] = st;
    });
    for (int r = 0; r < t; ++r) {
      CHECK(got[r].loss == doctest::Approx(want.loss).epsilon(1e-13));
      CHECK(got[r].correct == want.correct);
    }
  }
}

TEST_CASE("vocab-parallel cross-entropy: loss, count, correct (ties as unsplit) and gradient") {
  const int64_t rows = 7, V = 8;
  // Full logits, with ties for the maximum across shards.
  Tensor full = random_tensor(Shape{rows, V}, 1, 2.0);
  double* x = full.data<double>();
  for (int64_t j = 0; j < V; ++j) x[0 * V + j] = 1.5;      // all equal: argmax 0
  x[1 * V + 3] = x[1 * V + 6] = 9.0;                       // tie across shards: 3
  x[2 * V + 7] = 9.0;                                      // the last column
  x[3 * V + 5] = x[3 * V + 4] = 9.0;                       // tie inside a shard (t = 2): 4
  x[4 * V + 1] = x[4 * V + 2] = 9.0;                       // tie across shards (t = 4): 1
  Tensor y = Tensor::empty(Shape{rows}, DType::i32);
  const int32_t tgt[rows] = {0, 3, 7, 5, 1, 2, 6};         // correct in rows 0, 1, 2, 4 at least
  std::memcpy(y.data<int32_t>(), tgt, sizeof(tgt));
  CrossEntropyLoss ref;
  ref.plan(full.shape(), DType::f64, Exec::cpu());
  Tensor ref_in = clone(full);  // the backward overwrites its logits with dL/dlogits
  const LossStats want = ref.forward(ref_in, y);
  CHECK(want.correct >= 4);
  Tensor dref = clone(ref.backward(0.5));
  CHECK(dref.raw() != ref_in.raw());
  for (int t : {1, 2, 4, 8}) {
    CAPTURE(t);
    std::mutex mu;
    std::vector<LossStats> got(t);
    run_ranks(t, [&](Communicator& comm, int rank) {
      const int64_t v = V / t;
      Tensor mine = Tensor::empty(Shape{rows, v}, DType::f64);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < v; ++j) mine.data<double>()[r * v + j] = x[r * V + rank * v + j];
      VocabParallelCrossEntropyLoss ce(comm, V);
      ce.plan(mine.shape(), DType::f64, Exec::cpu());
      const LossStats st = ce.forward(mine, y);
      Tensor d = ce.backward(0.5);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < v; ++j)
          CHECK(d.data<double>()[r * v + j] ==
                doctest::Approx(dref.data<double>()[r * V + rank * v + j]).epsilon(1e-13));
      std::lock_guard<std::mutex> lock(mu);
      got[rank] = st;
    });
    for (int r = 0; r < t; ++r) {
      CHECK(got[r].loss == got[0].loss);  // the same bits on every rank
      CHECK(got[r].count == want.count);
      CHECK(got[r].correct == want.correct);
    }
    CHECK(got[0].loss == doctest::Approx(want.loss).epsilon(1e-13));
  }
}
