// The vocabulary-parallel loss's CPU pieces (ops::vp_row_max, ops::vp_exp_sums)
// against a scalar reference, on a slice wider than the kernels' 512-column
// blocks: the max exact wherever it lies, the first column holding the
// group's max (a later block's copy, the slice's last column, none), the
// target's logit where the slice holds it, and exp(x - m) and its sum.
#include <doctest/doctest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "core/rng.h"
#include "ops/ops.h"

using namespace dtrain;

TEST_CASE("ops: vocabulary-parallel row max, first max column and exp sums against a scalar reference") {
  const Exec& ex = Exec::cpu();
  const int64_t rows = 6, v = 1300, v0 = 2000;  // blocks of 512: [0, 512), [512, 1024), [1024, 1300)
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    Tensor f = Tensor::empty(Shape{rows, v}, DType::f32);
    CounterRng rng(5);
    float* fx = f.data<float>();
    for (int64_t i = 0; i < f.numel(); ++i) fx[i] = static_cast<float>(3 * rng.normal());
    fx[0 * v + 1100] = fx[0 * v + 1200] = 40;  // twice, in the last block: the first
    fx[1 * v + 7] = fx[1 * v + 1250] = 40;     // in the first and the last block
    fx[3 * v + 0] = 40;                        // the first column
    fx[4 * v + v - 1] = 40;                    // the last column
    fx[5 * v + 600] = -INFINITY;               // a padding column (model.vocab_used)
    fx[5 * v + 513] = 40;
    Tensor logits = Tensor::empty(Shape{rows, v}, dt);
    ops::convert(ex, f, logits);
    Tensor back = Tensor::empty(Shape{rows, v}, DType::f32);
    ops::convert(ex, logits, back);  // the values as the dtype holds them
    const float* x = back.data<float>();

    const DType st = ops::compute_dtype(dt);
    Tensor m = Tensor::empty(Shape{rows}, st);
    ops::vp_row_max(ex, logits, m);
    Tensor mf = Tensor::empty(Shape{rows}, DType::f32);
    ops::convert(ex, m, mf);
    std::vector<float> group(rows);
    for (int64_t r = 0; r < rows; ++r) {
      float ref = x[r * v];
      for (int64_t j = 1; j < v; ++j) ref = std::max(ref, x[r * v + j]);
      CAPTURE(r);
      CHECK(mf.data<float>()[r] == ref);
      group[r] = ref;
    }
    group[2] += 1;  // another rank's slice holds row 2's max

    Tensor gm = Tensor::empty(Shape{rows}, DType::f32);
    std::copy(group.begin(), group.end(), gm.data<float>());
    Tensor gmc = Tensor::empty(Shape{rows}, st);
    ops::convert(ex, gm, gmc);
    Tensor tgt = Tensor::empty(Shape{rows}, DType::i32);
    const int32_t targets[rows] = {2000 + 5, 1999, 2000 + 1299, 3300, 2000 + 700, 2000 + 513};  // in, before, last, after, in, in
    std::copy(targets, targets + rows, tgt.data<int32_t>());
    Tensor probs = Tensor::empty(Shape{rows, v}, dt), sums = Tensor::empty(Shape{2 * rows}, st);
    Tensor arg = Tensor::empty(Shape{rows}, DType::i32);
    ops::vp_exp_sums(ex, logits, tgt, v0, gmc, probs, sums, arg);
    Tensor pf = Tensor::empty(Shape{rows, v}, DType::f32), sf = Tensor::empty(Shape{2 * rows}, DType::f32);
    ops::convert(ex, probs, pf);
    ops::convert(ex, sums, sf);

    const int32_t first[rows] = {2000 + 1100, 2000 + 7, INT32_MAX, 2000 + 0, 2000 + 1299, 2000 + 513};
    // exp of x - m rounded to fp32 (an ulp of 40 is 4e-6); bf16 rounds the result too.
    const double tol = dt == DType::f32 ? 1e-5 : 1.0 / 128;
    for (int64_t r = 0; r < rows; ++r) {
      CAPTURE(r);
      CHECK(arg.data<int32_t>()[r] == first[r]);
      const int64_t y = targets[r] - v0;
      CHECK(sf.data<float>()[rows + r] == (y >= 0 && y < v ? x[r * v + y] : 0.0f));
      double sum = 0, worst = 0;
      for (int64_t j = 0; j < v; ++j) {
        const double e = std::exp(static_cast<double>(x[r * v + j]) - group[r]);
        sum += e;
        if (e > 1e-37) worst = std::max(worst, std::abs(pf.data<float>()[r * v + j] - e) / e);  // fp32's normals
        else CHECK(pf.data<float>()[r * v + j] <= 1e-37f);
      }
      CHECK(worst <= tol);
      CHECK(sf.data<float>()[r] == doctest::Approx(sum).epsilon(dt == DType::f32 ? 1e-6 : 1e-5));
    }
  }
}
