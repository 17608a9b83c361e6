#include "model/mlp.h"

#include "ops/ops.h"
#include "model/planned.h"

namespace dtrain {

Mlp::Mlp(ParamStore& ps, const std::string& name, int64_t c, bool bias, double proj_std,
         Communicator* tp, bool seq_parallel)
    : Layer(name),
      fc_(ps, name + ".fc", c, 4 * c, bias, Init::normal(0.02), Init::zeros(),
          {.split = TpSplit::column, .tp = tp, .sequence_parallel = seq_parallel}),
      proj_(ps, name + ".proj", 4 * c, c, bias, Init::normal(proj_std), Init::zeros(),
            {.split = TpSplit::row, .tp = tp, .sequence_parallel = seq_parallel}) {}

void Mlp::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  const Shape hidden = fc_.output_shape(in);
  // GELU as the products' epilogues (fused on a GPU in bf16): forward in fc's
  // product unless selective recomputation remakes GELU's output in backward,
  // where the own kernel must give the same bits as the forward did;
  // GELU's derivative in proj's input gradient.
  fc_.set_gelu_output(!selective_);
  proj_.set_gelu_input();
  fc_.plan(in, act, ex);
  proj_.plan(hidden, act, ex);
  // GELU's output: with selective recomputation one buffer for every MLP,
  // refilled by each backward.
  g_ = selective_ ? selective_->get("mlp.gelu", hidden, act, ex.device) : buffer("g", hidden, act, ex);
}

Tensor Mlp::forward(const Tensor& x, const Ctx& ctx) {
  Tensor g = planned_view(g_, fc_.output_shape(x.shape()));
  f_ = fc_.forward_gelu(x, g, ctx);  // f (N, 4C/t) = fc(x), g = gelu(f)
  return proj_.forward(g, ctx);
}

Tensor Mlp::backward(const Tensor& dy, const Ctx& ctx) {
  // proj_ kept g_ as its input: remade here when another MLP has overwritten it.
  if (selective_) ops::gelu_forward(ex(), f_, planned_view(g_, f_.shape()));
  Tensor d = proj_.backward_gelu(dy, f_, ctx);  // (N, 4C/t): dL/df = (dy W_proj) * gelu'(f)
  return fc_.backward(d, ctx);
}

Cost Mlp::cost(const Shape& in) const {
  Cost c = fc_.cost(in);
  c += proj_.cost(fc_.output_shape(in));
  c.act_bytes += fc_.output_shape(in).numel() * act_size();  // GELU's input (N, 4C/t)
  c.recompute_bytes = fc_.output_shape(in).numel() * act_size();  // GELU's output, proj's input
  c.act_bytes += in.numel() * act_size();  // proj's output, read by the residual dropout (which keeps its own)
  return c;
}

}  // namespace dtrain
