#include "model/block.h"

#include "ops/ops.h"

namespace dtrain {

Block::Block(ParamStore& ps, const std::string& name, int64_t c, int64_t n_head, bool bias,
             double dropout, double proj_std, Communicator* tp)
    : Layer(name),
      ln1_(ps, name + ".ln1", c, bias),
      attn_(ps, name + ".attn", c, n_head, bias, proj_std, tp),
      drop1_(name + ".attn.drop", dropout),
      ln2_(ps, name + ".ln2", c, bias),
      mlp_(ps, name + ".mlp", c, bias, proj_std, tp),
      drop2_(name + ".mlp.drop", dropout) {}

void Block::set_recompute(Recompute mode, BufferArena* arena) {
  recompute_ = mode;
  // Blocks run their backward one after another, so all of them share one
  // set of work buffers (input gradients, scratch): block i's input gradient
  // is read by block i-1 only until its ln1 writes its own there, last. Full
  // recomputation shares every buffer the same way (the forward is re-run
  // first).
  const Sharing what = mode == Recompute::full ? Sharing::all : Sharing::work;
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
  ln1_.plan(in, act, ex);
  attn_.plan(in, act, ex);
  drop1_.plan(in, act, ex);
  ln2_.plan(in, act, ex);
  mlp_.plan(in, act, ex);
  drop2_.plan(in, act, ex);
}

Tensor Block::forward(const Tensor& x, const Ctx& ctx) {
  if (recompute_ != Recompute::full) return run_forward(x, ctx);
  Tensor in = saved_.narrow0(0, x.size(0));  // the one activation this block keeps
  ops::convert(ex(), x, in);
  return run_forward(in, ctx);
}

Tensor Block::run_forward(const Tensor& x, const Ctx& ctx) {
  Tensor a = attn_.forward(ln1_.forward(x, ctx), ctx);
  Tensor x2 = drop1_.forward_add(a, x, ctx);  // x + drop(a)
  Tensor m = mlp_.forward(ln2_.forward(x2, ctx), ctx);
  return drop2_.forward_add(m, x2, ctx);  // x2 + drop(m)
}

Tensor Block::backward(const Tensor& dy, const Ctx& ctx) {
  // Full recomputation: the shared buffers hold another block's activations.
  if (recompute_ == Recompute::full) run_forward(saved_.narrow0(0, dy.size(0)), ctx);
  Tensor dh2 = mlp_.backward(drop2_.backward(dy, ctx), ctx);
  Tensor dx2 = ln2_.backward_add(dh2, dy);  // dy + d ln2
  Tensor dh1 = attn_.backward(drop1_.backward(dx2, ctx), ctx);
  return ln1_.backward_add(dh1, dx2);  // dx2 + d ln1
}

Cost Block::cost(const Shape& in) const {
  Cost c = ln1_.cost(in);
  c += attn_.cost(in);
  c += drop1_.cost(in);
  c += ln2_.cost(in);
  c += mlp_.cost(in);
  c += drop2_.cost(in);
  return c;
}

}  // namespace dtrain
