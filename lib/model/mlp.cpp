#include "model/mlp.h"

#include "ops/ops.h"
#include "model/planned.h"

namespace dtrain {

namespace {

int64_t width(int64_t c, int64_t hidden) { return hidden > 0 ? hidden : 4 * c; }

}  // namespace

Mlp::Mlp(ParamStore& ps, const std::string& name, int64_t c, bool bias, double proj_std,
         Communicator* tp, bool seq_parallel, int64_t hidden, bool swiglu)
    : Layer(name),
      swiglu_(swiglu),
      fc_(ps, name + ".fc", c, (swiglu ? 2 : 1) * width(c, hidden), bias, Init::normal(0.02), Init::zeros(),
          {.split = TpSplit::column,
           .tp = tp,
           .blocks = swiglu ? std::vector<int64_t>(2, width(c, hidden)) : std::vector<int64_t>{},  // gate | up
           .sequence_parallel = seq_parallel}),
      proj_(ps, name + ".proj", width(c, hidden), c, bias, Init::normal(proj_std), Init::zeros(),
            {.split = TpSplit::row, .tp = tp, .blocks = {}, .sequence_parallel = seq_parallel}) {}

namespace {

// The activation's output for fc's output f: half its width with SwiGLU.
Shape activated(const Shape& f, bool swiglu) {
  Shape h = f;
  if (swiglu) h[-1] /= 2;
  return h;
}

}  // namespace

void Mlp::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  if (swiglu_) {
    const Shape f = fc_.output_shape(in), hidden = activated(f, true);
    fc_.plan(in, act, ex);
    proj_.plan(hidden, act, ex);
    g_ = selective_ ? selective_->get("mlp.swiglu", hidden, act, ex.device) : buffer("g", hidden, act, ex);
    df_ = work_buffer("df", f, act, ex);
    return;
  }
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
  if (swiglu_) {
    f_ = fc_.forward(x, ctx);  // f (N, 2F/t): gate | up
    Tensor g = planned_view(g_, activated(f_.shape(), true));
    ops::swiglu_forward(ex(), f_, g);
    return proj_.forward(g, ctx);
  }
  Tensor g = planned_view(g_, fc_.output_shape(x.shape()));
  f_ = fc_.forward_gelu(x, g, ctx);  // f (N, 4C/t) = fc(x), g = gelu(f)
  return proj_.forward(g, ctx);
}

Tensor Mlp::backward(const Tensor& dy, const Ctx& ctx) {
  if (swiglu_) {
    // proj_ kept g_ as its input: remade when another MLP has overwritten it.
    if (selective_) ops::swiglu_forward(ex(), f_, planned_view(g_, activated(f_.shape(), true)));
    Tensor dg = proj_.backward(dy, ctx);  // (N, F/t)
    Tensor df = planned_view(df_, f_.shape());
    ops::swiglu_backward(ex(), f_, dg, df);
    return fc_.backward(df, ctx);
  }
  // proj_ kept g_ as its input: remade here when another MLP has overwritten it.
  if (selective_) ops::gelu_forward(ex(), f_, planned_view(g_, f_.shape()));
  Tensor d = proj_.backward_gelu(dy, f_, ctx);  // (N, 4C/t): dL/df = (dy W_proj) * gelu'(f)
  return fc_.backward(d, ctx);
}

Cost Mlp::cost(const Shape& in) const {
  const Shape f = fc_.output_shape(in), hidden = activated(f, swiglu_);
  Cost c = fc_.cost(in);
  c += proj_.cost(hidden);
  c.act_bytes += f.numel() * act_size();  // the activation's input (N, F/t; swiglu 2F/t)
  c.recompute_bytes = hidden.numel() * act_size();  // the activation's output, proj's input
  if (swiglu_) c.work_bytes += f.numel() * act_size();  // dL/df
  c.act_bytes += in.numel() * act_size();  // proj's output, read by the residual dropout (which keeps its own)
  return c;
}

}  // namespace dtrain
