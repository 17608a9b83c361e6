// Attention on the GPU (ops::attention_forward/backward: head permutes,
// batched cuBLASLt products, own causal softmax kernels) against the CPU op on
// the same inputs. Compared: y, the probabilities (lower triangle: the CPU
// leaves entries above the diagonal unspecified beyond its row block, the GPU
// zeroes them), dqkv and the score gradients att holds after backward.
// Bounds (max |gpu - cpu| / max |cpu|): fp32 1e-5 (order of fp32 sums, expf
// against the CPU's exp); bf16: the probabilities, y, dS and dqkv are rounded
// to bf16 from fp32 values computed in another order, so one bf16 rounding
// step may differ: 2^-7 for the probabilities and y, 2^-6 for dS and dqkv.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "cuda/blas_compare.h"
#include "ops/ops.h"
#include "ops/runtime.h"

using namespace dtrain;

namespace {

struct Result {
  std::vector<double> y, att, dqkv, ds;
};

// The lower triangle (j <= i) of every (T, T) matrix.
std::vector<double> lower(const std::vector<double>& att, int64_t T) {
  std::vector<double> out;
  for (size_t m = 0; m < att.size() / static_cast<size_t>(T * T); ++m)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j <= i; ++j) out.push_back(att[m * T * T + i * T + j]);
  return out;
}

// nh: the heads, or {query, key/value} heads (grouped-query attention).
Result run(const ops::Runtime* rt, const Exec& ex, const Shape& plan_qkv, const Tensor& hqkv, const Tensor& hdy,
           ops::Heads nh, DType act) {
  const bool gpu = ex.on_cuda();
  auto place = [&](const Tensor& h) { return gpu ? test::upload(h, ex.device) : h; };
  const int64_t B = hqkv.size(0), T = hqkv.size(1), C = hqkv.size(2) / nh.row_heads() * nh.q;
  const ops::AttentionPlan plan(ex, plan_qkv, nh, act);
  Tensor scratch = Tensor::empty(Shape{ops::attention_scratch(ex, plan_qkv, nh, act)}, ops::compute_dtype(act), ex.device);
  Tensor qkv = place(hqkv), dy = place(hdy);
  Tensor att = Tensor::empty(Shape{B, nh.q, T, T}, act, ex.device);
  Tensor y = Tensor::empty(Shape{B, T, C}, act, ex.device);
  Tensor dqkv = Tensor::empty(hqkv.shape(), act, ex.device);
  ops::attention_forward(ex, plan, qkv, nh, att, y, scratch);
  if (rt) rt->sync();
  Result r{test::values(y), lower(test::values(att), T), {}, {}};
  ops::attention_backward(ex, plan, dy, qkv, att, nh, scratch, dqkv);
  if (rt) rt->sync();
  r.dqkv = test::values(dqkv);
  r.ds = lower(test::values(att), T);
  return r;
}

}  // namespace

TEST_CASE("cuda attention: forward and backward against the CPU in fp32 and bf16, multi-head and grouped-query") {
  // Grouped-query (fewer key/value heads): the GPU copies each key/value head
  // for its group's query heads, and its backward's dK and dV products run per
  // key/value head over the group's stacked query heads, so each sum is
  // accumulated in fp32 and rounded once, as the CPU's: bf16's bound is
  // multi-head attention's (it was one rounding wider while each head's part
  // was rounded before the group's sum).
  auto rt = ops::Runtime::open("cuda", 0, false);
  struct Dims {
    int64_t B, T, hs;
    ops::Heads h;
  };
  for (Dims d : {Dims{2, 64, 24, 4}, Dims{3, 37, 12, 5}, Dims{1, 1, 4, 2}, Dims{2, 1024, 64, 12},
                 Dims{2, 64, 16, {8, 2}}, Dims{3, 37, 8, {8, 1}}, Dims{2, 300, 64, {8, 4}}})
    for (DType act : {DType::f32, DType::bf16}) {
      CAPTURE(d.B);
      CAPTURE(d.T);
      INFO("heads: " << d.h.str() << " of " << d.hs << ", dtype: " << std::string(dtype_name(act)));
      const Shape qs{d.B, d.T, d.h.row_heads() * d.hs};
      Tensor qkv = test::random_host(qs, act, 11);
      Tensor dy = test::random_host(Shape{d.B, d.T, d.h.q * d.hs}, act, 12);
      const Result want = run(nullptr, Exec::cpu(), qs, qkv, dy, d.h, act);
      const Result got = run(rt.get(), rt->exec(), qs, qkv, dy, d.h, act);
      const bool f32 = act == DType::f32;
      CHECK(test::norm_err(got.att, want.att) <= (f32 ? 1e-5 : 1.0 / 128));
      CHECK(test::norm_err(got.y, want.y) <= (f32 ? 1e-5 : 1.0 / 128));
      CHECK(test::norm_err(got.ds, want.ds) <= (f32 ? 1e-5 : 1.0 / 64));
      CHECK(test::norm_err(got.dqkv, want.dqkv) <= (f32 ? 1e-5 : 1.0 / 64));
    }
}

TEST_CASE("cuda attention: a smaller batch than planned, the probabilities alone, and the same bits twice") {
  auto rt = ops::Runtime::open("cuda", 0, false);
  const Exec& ex = rt->exec();
  for (DType act : {DType::f32, DType::bf16}) {
    const int64_t nh = 4, T = 80, C = 64;
    const Shape planned{4, T, 3 * C};
    const ops::AttentionPlan plan(ex, planned, nh, act);
    Tensor scratch = Tensor::empty(Shape{ops::attention_scratch(ex, planned, nh, act)}, ops::compute_dtype(act), ex.device);
    Tensor hqkv = test::random_host(Shape{2, T, 3 * C}, act, 5), hdy = test::random_host(Shape{2, T, C}, act, 6);
    Tensor qkv = test::upload(hqkv, ex.device), dy = test::upload(hdy, ex.device);
    Tensor att1 = Tensor::empty(Shape{2, nh, T, T}, act, ex.device), att2 = Tensor::empty(att1.shape(), act, ex.device);
    Tensor y1 = Tensor::empty(Shape{2, T, C}, act, ex.device), y2 = Tensor::empty(y1.shape(), act, ex.device);
    Tensor d1 = Tensor::empty(Shape{2, T, 3 * C}, act, ex.device), d2 = Tensor::empty(d1.shape(), act, ex.device);
    ops::attention_forward(ex, plan, qkv, nh, att1, y1, scratch);
    ops::attention_forward(ex, plan, qkv, nh, att2, Tensor{}, scratch);  // recomputation: probabilities only
    rt->sync();
    CHECK(test::same_bits(att1, att2));
    ops::attention_forward(ex, plan, qkv, nh, att2, y2, scratch);
    ops::attention_backward(ex, plan, dy, qkv, att1, nh, scratch, d1);
    ops::attention_backward(ex, plan, dy, qkv, att2, nh, scratch, d2);
    rt->sync();
    CHECK(test::same_bits(y1, y2));
    CHECK(test::same_bits(d1, d2));
    CHECK(test::same_bits(att1, att2));
    // Against the CPU at this batch.
    const Result want = run(nullptr, Exec::cpu(), hqkv.shape(), hqkv, hdy, nh, act);
    CHECK(test::norm_err(test::values(y1), want.y) <= (act == DType::f32 ? 1e-5 : 1.0 / 128));
    CHECK(test::norm_err(test::values(d1), want.dqkv) <= (act == DType::f32 ? 1e-5 : 1.0 / 64));
  }
}
