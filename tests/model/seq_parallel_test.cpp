// Sequence parallelism's local pieces (model/seq_parallel.h): the block
// transpose between the packed rank-major order and (B, T, C), and dropout
// masks of a sequence slice equal to the slice of one process's masks. The
// collectives themselves are checked end to end against one process in
// tests/train/layouts_test.cpp.
#include <doctest/doctest.h>

#include <vector>

#include "model/seq_parallel.h"
#include "ops/ops.h"

using namespace dtrain;

TEST_CASE("seq parallel: transpose_blocks turns (t, B, T/t C) into (B, T, C) and back") {
  const int64_t t = 3, B = 2, Tl = 2, C = 4;
  Tensor packed = Tensor::empty(Shape{t * B, Tl, C}, DType::f32);
  float* p = packed.data<float>();
  // Rank r's slice of sample b, position i, channel c: value b * 1000 + (r Tl + i) * 10 + c.
  for (int64_t r = 0; r < t; ++r)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Tl; ++i)
        for (int64_t c = 0; c < C; ++c)
          p[((r * B + b) * Tl + i) * C + c] = static_cast<float>(b * 1000 + (r * Tl + i) * 10 + c);
  Tensor full = Tensor::empty(Shape{B, t * Tl, C}, DType::f32);
  ops::transpose_blocks(Exec::cpu(), packed, t, B, full);
  const float* f = full.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t pos = 0; pos < t * Tl; ++pos)
      for (int64_t c = 0; c < C; ++c)
        REQUIRE(f[(b * t * Tl + pos) * C + c] == static_cast<float>(b * 1000 + pos * 10 + c));
  Tensor back = Tensor::zeros(Shape{t * B, Tl, C}, DType::f32);
  ops::transpose_blocks(Exec::cpu(), full, B, t, back);
  CHECK(std::vector<float>(back.data<float>(), back.data<float>() + back.numel()) ==
        std::vector<float>(p, p + packed.numel()));
  CHECK_THROWS(ops::transpose_blocks(Exec::cpu(), full, 5, t, back));  // 5 does not divide the blocks
}

TEST_CASE("seq parallel: a sequence slice draws the dropout mask elements one process draws") {
  const int64_t B = 3, T = 8, C = 5, t = 4, Tl = T / t;
  Tensor x = Tensor::empty(Shape{B, T, C}, DType::f32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = 1.0f + static_cast<float>(i);
  Tensor mask = Tensor::empty(Shape{B, T, C}, DType::u8), y = Tensor::empty(Shape{B, T, C}, DType::f32);
  const uint64_t key = ops::dropout_key(7, 3, 99);
  ops::dropout_forward(Exec::cpu(), x, Tensor{}, 0.3, key, 11, mask, y);
  int64_t dropped = 0;
  for (int64_t r = 0; r < t; ++r) {
    Tensor xs = Tensor::empty(Shape{B, Tl, C}, DType::f32);
    Tensor ms = Tensor::empty(Shape{B, Tl, C}, DType::u8), ys = Tensor::empty(Shape{B, Tl, C}, DType::f32);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t e = 0; e < Tl * C; ++e) xs.data<float>()[b * Tl * C + e] = x.data<float>()[b * T * C + r * Tl * C + e];
    ops::dropout_forward(Exec::cpu(), xs, Tensor{}, 0.3, key, 11, ms, ys, r * Tl * C);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t e = 0; e < Tl * C; ++e) {
        const int64_t whole = b * T * C + r * Tl * C + e, part = b * Tl * C + e;
        REQUIRE(ms.data<uint8_t>()[part] == mask.data<uint8_t>()[whole]);
        REQUIRE(ys.data<float>()[part] == y.data<float>()[whole]);
        dropped += mask.data<uint8_t>()[whole] == 0;
      }
  }
  CHECK(dropped > 0);  // the test sees masks that drop something
  CHECK(SeqParallel{}.on() == false);
}
