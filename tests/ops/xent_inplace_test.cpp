// The cross-entropy's backward in place (dL/dlogits over the logits, as
// CrossEntropyLoss runs it) gives the same bits as into a buffer of its own,
// in fp32 and bf16 (bf16 reads the target's logit before the row is
// overwritten). The GPU kernel reads each element before its thread writes it.
#include <doctest/doctest.h>

#include <cstring>

#include "core/rng.h"
#include "ops/ops.h"

using namespace dtrain;

TEST_CASE("ops: cross-entropy backward in place equals out of place, fp32 and bf16") {
  const Exec& ex = Exec::cpu();
  const int64_t rows = 7, v = 37;
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    Tensor f = Tensor::empty(Shape{rows, v}, DType::f32);
    CounterRng rng(11);
    for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = static_cast<float>(3 * rng.normal());
    Tensor logits = Tensor::empty(Shape{rows, v}, dt);
    ops::convert(ex, f, logits);
    Tensor tgt = Tensor::empty(Shape{rows}, DType::i32);
    for (int64_t r = 0; r < rows; ++r) tgt.data<int32_t>()[r] = static_cast<int32_t>((r * 5) % v);
    const DType st = ops::compute_dtype(dt);
    Tensor mx = Tensor::empty(Shape{rows}, st), sum = Tensor::empty(Shape{rows}, st);
    Tensor loss = Tensor::empty(Shape{rows}, DType::f64), arg = Tensor::empty(Shape{rows}, DType::i32);
    ops::LossAccum acc = ops::make_loss_accum(ex);
    ops::softmax_xent_forward(ex, logits, tgt, mx, sum, loss, arg, acc);
    Tensor apart = Tensor::empty(Shape{rows, v}, dt);
    ops::softmax_xent_backward(ex, logits, tgt, mx, sum, 0.25, apart);
    ops::softmax_xent_backward(ex, logits, tgt, mx, sum, 0.25, logits);
    CHECK(std::memcmp(apart.raw(), logits.raw(), apart.bytes()) == 0);
  }
}

TEST_CASE("ops: fill_columns sets the last columns of every row and nothing else") {
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor x = Tensor::empty(Shape{3, 2, 5}, dt);  // rows of the last dimension: 6 of 5
    auto at = [&](int64_t i) {
      return dt == DType::f32 ? x.data<float>()[i] : static_cast<float>(x.data<bf16>()[i]);
    };
    auto reset = [&] {
      for (int64_t i = 0; i < x.numel(); ++i) {
        if (dt == DType::f32) x.data<float>()[i] = static_cast<float>(i);
        else x.data<bf16>()[i] = bf16(static_cast<float>(i));
      }
    };
    reset();
    ops::fill_columns(Exec::cpu(), x, 3, -INFINITY);
    for (int64_t i = 0; i < x.numel(); ++i) {
      CAPTURE(i);
      if (i % 5 >= 3) CHECK(at(i) == -INFINITY);
      else CHECK(at(i) == static_cast<float>(i));
    }
    reset();
    ops::fill_columns(Exec::cpu(), x, 5, 0.0);  // from == v: nothing
    for (int64_t i = 0; i < x.numel(); ++i) CHECK(at(i) == static_cast<float>(i));
    CHECK_THROWS(ops::fill_columns(Exec::cpu(), x, 6, 0.0));
    CHECK_THROWS(ops::fill_columns(Exec::cpu(), x, -1, 0.0));
  }
}
