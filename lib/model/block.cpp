#include "model/block.h"

#include <utility>

#include "model/planned.h"
#include "ops/ops.h"

namespace dtrain {

Block::Block(ParamStore& ps, const std::string& name, const BlockSpec& b, Communicator* tp,
             bool seq_parallel)
    : Layer(name),
      seq_(seq_parallel ? tp : nullptr),
      ln1_(ps, name + ".ln1", b.c, b.bias, b.rms_norm),
      attn_(ps, name + ".attn", b.c, ops::Heads(b.n_head, b.n_kv_head > 0 ? b.n_kv_head : b.n_head), b.bias, b.proj_std, tp, seq_.on(), b.rope),
      drop1_(name + ".attn.drop", b.dropout, /*adds_residual=*/true),
      ln2_(ps, name + ".ln2", b.c, b.bias, b.rms_norm),
      mlp_(ps, name + ".mlp", b.c, b.bias, b.proj_std, tp, seq_.on(), b.ffn_hidden, b.swiglu),
      drop2_(name + ".mlp.drop", b.dropout, /*adds_residual=*/true) {
  if (seq_.on()) {
    ln1_.set_sequence_parallel(tp);
    ln2_.set_sequence_parallel(tp);
    drop1_.set_sequence_parallel(seq_);
    drop2_.set_sequence_parallel(seq_);
  }
}

void Block::set_recompute(Recompute mode, BufferArena* arena) {
  recompute_ = mode;
  // Blocks run their backward one after another, so all of them share one
  // set of work buffers (input gradients, scratch): block i's input gradient
  // is read by block i-1 only until its ln1 writes its own there, last. Full
  // recomputation shares every buffer the same way (the forward is re-run
  // first).
  const Sharing what = mode == Recompute::full ? Sharing::all : Sharing::work;
  arena_ = arena;  // sequence parallelism's transient buffers
  share_buffers(arena, "block", what);  // and its own (kept unless full)
  ln1_.share_buffers(arena, "block.ln1", what);
  attn_.share_buffers(arena, "block.attn", what);
  drop1_.share_buffers(arena, "block.attn.drop", what);
  ln2_.share_buffers(arena, "block.ln2", what);
  mlp_.share_buffers(arena, "block.mlp", what);
  drop2_.share_buffers(arena, "block.mlp.drop", what);
  if (mode != Recompute::full) {
    attn_.set_recompute(mode, arena);
    mlp_.set_recompute(mode, arena);
  }
}

void Block::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  if (recompute_ == Recompute::full) saved_ = Tensor::empty(in, act, ex.device);
  // Sequence parallel: the attention sees the whole sequence, the MLP the packed order.
  const Shape full = seq_.on() ? seq_.full(in) : in, packed = seq_.on() ? seq_.packed(in) : in;
  ln1_.plan(in, act, ex);
  attn_.plan(full, act, ex);
  drop1_.plan(in, act, ex);
  ln2_.plan(in, act, ex);
  mlp_.plan(packed, act, ex);
  drop2_.plan(in, act, ex);
  if (seq_.on()) {
    h1_ = work_buffer("seq.h1", full, act, ex);
    h2_ = work_buffer("seq.h2", packed, act, ex);
    // Used within one forward or backward call only: one set for the model.
    reduced_ = SeqParallel::shared(arena_, "reduced", in, act, ex.device);
    dfull_ = SeqParallel::shared(arena_, "dfull", full, act, ex.device);
    dreduced_ = SeqParallel::shared(arena_, "dreduced", in, act, ex.device);
    scratch_ = seq_.scratch(arena_, in, act, ex.device);
  }
}

Tensor Block::forward(const Tensor& x, const Ctx& ctx) {
  if (recompute_ != Recompute::full) return run_forward(x, ctx);
  Tensor in = saved_.narrow0(0, x.size(0));  // the one activation this block keeps
  ops::convert(ex(), x, in);
  return run_forward(in, ctx);
}

Tensor Block::run_forward(const Tensor& x, const Ctx& ctx) {
  if (seq_.on()) return seq_forward(x, ctx);
  Tensor a = attn_.forward(ln1_.forward(x, ctx), ctx);
  Tensor x2 = drop1_.forward_add(a, x, ctx);  // x + drop(a)
  Tensor m = mlp_.forward(ln2_.forward(x2, ctx), ctx);
  return drop2_.forward_add(m, x2, ctx);  // x2 + drop(m)
}

Tensor Block::backward(const Tensor& dy, const Ctx& ctx) {
  // Full recomputation: the shared buffers hold another block's activations.
  if (recompute_ == Recompute::full) run_forward(saved_.narrow0(0, dy.size(0)), ctx);
  if (seq_.on()) return seq_backward(dy, ctx);
  Tensor dh2 = mlp_.backward(drop2_.backward(dy, ctx), ctx);
  Tensor dx2 = ln2_.backward_add(dh2, dy);  // dy + d ln2
  Tensor dh1 = attn_.backward(drop1_.backward(dx2, ctx), ctx);
  return ln1_.backward_add(dh1, dx2);  // dx2 + d ln1
}

// x: this rank's slice (B, T/t, C).
Tensor Block::seq_forward(const Tensor& x, const Ctx& ctx) {
  const Shape& s = x.shape();
  const Shape full = seq_.full(s), packed = seq_.packed(s);
  Tensor h1 = planned_view(h1_, full);
  ln1_out_ = ln1_.forward(x, ctx);
  seq_.gather(ex(), ln1_out_, scratch_, h1);  // (B, T, C)
  Tensor a = planned_view(reduced_, s);
  seq_.scatter(ex(), attn_.forward(h1, ctx), scratch_, a);  // the partial sums' slice
  attn_.add_output_bias(a);
  Tensor x2 = drop1_.forward_add(a, x, ctx);  // x + drop(a)
  Tensor h2 = planned_view(h2_, packed);
  ln2_out_ = ln2_.forward(x2, ctx);
  seq_.gather_packed(ln2_out_, h2);  // (t B, T/t, C): the MLP is row-wise
  Tensor m = planned_view(reduced_, s);  // a is spent: drop1 wrote x2
  seq_.scatter_packed(mlp_.forward(h2, ctx), m);
  mlp_.add_output_bias(m);
  return drop2_.forward_add(m, x2, ctx);  // x2 + drop(m)
}

Tensor Block::seq_backward(const Tensor& dy, const Ctx& ctx) {
  const Shape& s = dy.shape();
  const Shape full = seq_.full(s), packed = seq_.packed(s);
  // The MLP's output gradient for every rank's slice, in the packed order.
  Tensor dm = planned_view(scratch_, packed);
  seq_.gather_packed(drop2_.backward(dy, ctx), dm);
  // The products' gathered inputs, which later blocks' forwards overwrote,
  // gathered again behind each product's input gradient until its weight
  // gradient reads them (the re-run forward of full recomputation has just
  // gathered them).
  const bool regather = recompute_ != Recompute::full;
  if (regather) {
    regather_ = seq_.start_gather_packed(ln2_out_, planned_view(h2_, packed));
    mlp_.defer_input([this] { std::exchange(regather_, nullptr)->wait(); });
  }
  Tensor dh2 = planned_view(dreduced_, s);
  seq_.scatter_packed(mlp_.backward(dm, ctx), dh2);  // the partial dL/dh2's slice
  Tensor dx2 = ln2_.backward_add(dh2, dy);  // dy + d ln2
  Tensor da = planned_view(dfull_, full);
  seq_.gather(ex(), drop1_.backward(dx2, ctx), scratch_, da);
  if (regather) {  // into the packed scratch, free until the attention's gradient is scattered
    const Tensor p = planned_view(scratch_, packed);
    regather_ = seq_.start_gather_packed(ln1_out_, p);
    attn_.defer_input([this, p, full] {
      std::exchange(regather_, nullptr)->wait();
      seq_.unpack(ex(), p, planned_view(h1_, full));
    });
  }
  Tensor dh1 = planned_view(dreduced_, s);  // dh2 is spent: ln2 wrote dx2
  seq_.scatter(ex(), attn_.backward(da, ctx), scratch_, dh1);
  Tensor dx = ln1_.backward_add(dh1, dx2);  // dx2 + d ln1
  ln1_.sync_grads(ctx);
  ln2_.sync_grads(ctx);
  return dx;
}

Cost Block::cost(const Shape& in) const {
  // Sequence parallel: `in` is the slice; the attention runs on the whole
  // sequence and the MLP on the packed order (the same rows).
  const Shape full = seq_.on() ? seq_.full(in) : in, packed = seq_.on() ? seq_.packed(in) : in;
  Cost c = ln1_.cost(in);
  c += attn_.cost(full);
  c += drop1_.cost(in);
  c += ln2_.cost(in);
  c += mlp_.cost(packed);
  c += drop2_.cost(in);
  if (seq_.on()) {
    // It keeps the norms' outputs on the slice; the gathered inputs of the
    // two products, which their column-parallel Linears count as kept, are
    // work buffers gathered again in backward (but under full recomputation):
    // two more all-gathers, each half an all-reduce of its bytes, counted
    // apart from tp_bwd (Cost::tp_regather_calls).
    const int64_t gathered = (full.numel() + packed.numel()) * act_size();
    c.act_bytes += 2 * in.numel() * act_size() - gathered;
    c.work_bytes += gathered;
    // The model's shared slots: reduced and dreduced (slices), dfull and the
    // packed scratch (the whole sequence).
    c.shared_bytes = (2 * in.numel() + 2 * full.numel()) * act_size();
    c.tp_regather_calls = 2 * 0.5;
    c.tp_regather_bytes = (full.numel() + packed.numel()) * 4 / 2;
  }
  return c;
}

}  // namespace dtrain
