// Activation recomputation: selective and full give the same bits as none in
// fp32 (losses and every gradient, with dropout active, whose masks must
// replay), and lower the memory the plan allocates: full keeps one input per
// block plus one shared set of block buffers, as the cost model assumes.
#include <doctest/doctest.h>

#include <malloc.h>

#include <cstring>

#include "model/block.h"
#include "model/model.h"

using namespace dtrain;

namespace {

ModelConfig config() {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = 64;
  c.context_length = 16;
  c.n_layer = 4;
  c.n_head = 2;
  c.n_embd = 32;
  c.dropout = 0.1;
  c.bias = true;
  return c;
}

struct Result {
  std::vector<double> losses;
  Tensor grads;
  int64_t plan_bytes = 0;
};

Result run(Recompute mode, DType dtype) {
  const int64_t B = 3, T = 16;
  auto m = build_model(config(), T, dtype, Device::cpu(), 11);
  m->recompute = mode;
  const size_t before = mallinfo2().uordblks + mallinfo2().hblkhd;
  m->plan(B);
  Result r;
  r.plan_bytes = static_cast<int64_t>(mallinfo2().uordblks + mallinfo2().hblkhd - before);
  Tensor x = Tensor::empty(m->input_shape(B), DType::i32), y = Tensor::empty(m->target_shape(B), DType::i32);
  for (int step = 0; step < 3; ++step) {
    for (int64_t i = 0; i < x.numel(); ++i) {
      x.data<int32_t>()[i] = static_cast<int32_t>((i * 7 + step * 3) % 64);
      y.data<int32_t>()[i] = static_cast<int32_t>((i * 5 + step) % 64);
    }
    const Ctx ctx{.training = true, .seed = 3, .step = step, .sample_offset = step * B};
    r.losses.push_back(m->forward(x, y, ctx).loss);
    m->backward(1.0, ctx);  // gradients accumulate over the three
  }
  r.grads = m->params.grads();
  return r;
}

}  // namespace

TEST_CASE("recompute: selective and full give none's losses and gradients bit for bit (fp32, dropout on)") {
  const Result none = run(Recompute::none, DType::f32);
  for (Recompute mode : {Recompute::selective, Recompute::full}) {
    CAPTURE(static_cast<int>(mode));
    const Result r = run(mode, DType::f32);
    CHECK(r.losses == none.losses);
    CHECK(std::memcmp(r.grads.raw(), none.grads.raw(), none.grads.bytes()) == 0);
  }
}

TEST_CASE("recompute: bf16 as well") {
  const Result none = run(Recompute::none, DType::bf16);
  const Result full = run(Recompute::full, DType::bf16);
  CHECK(full.losses == none.losses);
  CHECK(std::memcmp(full.grads.raw(), none.grads.raw(), none.grads.bytes()) == 0);
}

TEST_CASE("recompute: the plan's activation memory falls as predicted") {
  run(Recompute::none, DType::f32);  // first-use allocations of the process (thread pools) out of the way
  const Result none = run(Recompute::none, DType::f32), sel = run(Recompute::selective, DType::f32),
               full = run(Recompute::full, DType::f32);
  MESSAGE("planned activation bytes: none " << none.plan_bytes << ", selective " << sel.plan_bytes
                                            << ", full " << full.plan_bytes);
  // One block's buffers, measured on its own.
  const int64_t B = 3, T = 16, C = 32, L = 4;
  int64_t block_bytes = 0, block_work = 0;
  {
    ParamStore ps;
    Block block(ps, "blocks.0", BlockSpec{.c = C, .n_head = 2, .bias = true, .dropout = 0.1, .proj_std = 0.02});
    ps.allocate(DType::f32, Device::cpu(), 1);
    const size_t before = mallinfo2().uordblks + mallinfo2().hblkhd;
    block.plan(Shape{B, T, C}, DType::f32, Exec::cpu());
    block_bytes = static_cast<int64_t>(mallinfo2().uordblks + mallinfo2().hblkhd - before);
    block_work = block.cost(Shape{B, T, C}).work_bytes;
  }
  // Full: L - 1 blocks give up their buffers (their work buffers are shared in
  // every mode), every block keeps its input.
  const int64_t input = B * T * C * 4;
  const int64_t predicted = none.plan_bytes - (L - 1) * (block_bytes - block_work) + L * input;
  MESSAGE("one block " << block_bytes << " bytes; full predicted " << predicted);
  // Within 3%: the block measured alone also pays the allocator's rounding
  // of the work buffers the model's blocks share.
  CHECK(std::abs(static_cast<double>(full.plan_bytes - predicted)) < 0.03 * static_cast<double>(full.plan_bytes));
  // Selective: L - 1 of the blocks' probabilities (B, nh, T, T) and GELU outputs (B, T, 4C) go.
  const int64_t sel_predicted = none.plan_bytes - (L - 1) * (B * 2 * T * T + B * T * 4 * C) * 4;
  CHECK(std::abs(static_cast<double>(sel.plan_bytes - sel_predicted)) < 0.02 * static_cast<double>(sel.plan_bytes));
}
