#include "model/attention.h"

#include "ops/ops.h"
#include "model/planned.h"

namespace dtrain {

namespace {

int64_t tp_size(Communicator* tp) { return tp ? tp->size() : 1; }

// This rank's width C/t, after checking the shapes (before the Linears are built).
int64_t local_width(const std::string& name, int64_t c, int64_t n_head, Communicator* tp, double rope_theta) {
  if (n_head <= 0 || c % n_head != 0)
    throw ConfigError(fmt::format("{}: n_embd {} is not divisible by n_head {}", name, c, n_head));
  if (rope_theta > 0 && (c / n_head) % 2 != 0)
    throw ConfigError(fmt::format("{}: rotary embeddings turn pairs of a head's features, and its width "
                                  "n_embd / n_head = {} is odd", name, c / n_head));
  if (n_head % tp_size(tp) != 0)
    throw ConfigError(fmt::format("{}: n_head {} is not divisible by the tensor-parallel degree {}",
                                  name, n_head, tp_size(tp)));
  return c / tp_size(tp);
}

}  // namespace

CausalSelfAttention::CausalSelfAttention(ParamStore& ps, const std::string& name, int64_t c,
                                         int64_t n_head, bool bias, double proj_std,
                                         Communicator* tp, bool seq_parallel, double rope_theta)
    : Layer(name),
      c_(c),
      n_head_(n_head),
      local_c_(local_width(name, c, n_head, tp, rope_theta)),
      local_heads_(n_head / tp_size(tp)),
      rope_theta_(rope_theta),
      qkv_(ps, name + ".qkv", c, 3 * c, bias, Init::normal(0.02), Init::zeros(),
           {.split = TpSplit::column, .tp = tp, .groups = 3, .sequence_parallel = seq_parallel}),
      proj_(ps, name + ".proj", c, c, bias, Init::normal(proj_std), Init::zeros(),
            {.split = TpSplit::row, .tp = tp, .sequence_parallel = seq_parallel}) {}

void CausalSelfAttention::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  DTRAIN_CHECK(in.rank() == 3 && in[2] == c_, "{}: input {} is not (B, T, {})", name(), in.str(), c_);
  const int64_t B = in[0], T = in[1];
  const Shape heads{B, T, local_c_};  // this rank's heads side by side
  qkv_.plan(in, act, ex);
  proj_.plan(heads, act, ex);
  // The probabilities (B, nh, T, T): with selective recomputation one buffer
  // for every attention layer, refilled by each backward.
  const Shape probs{B, local_heads_, T, T};
  att_ = selective_ ? selective_->get("attn.probs", probs, act, ex.device) : buffer("att", probs, act, ex);
  y_ = buffer("y", heads, act, ex);
  dqkv_ = work_buffer("dqkv", Shape{B, T, 3 * local_c_}, act, ex);
  const Shape qkv{B, T, 3 * local_c_};
  attn_plan_ = ops::AttentionPlan(ex, qkv, local_heads_, act);
  scratch_ = work_buffer("scratch", Shape{ops::attention_scratch(ex, qkv, local_heads_, act)},
                    ops::compute_dtype(act), ex);
}

Tensor CausalSelfAttention::forward(const Tensor& x, const Ctx& ctx) {
  const Shape& s = x.shape();
  DTRAIN_CHECK(s.rank() == 3 && s[2] == c_, "{}: input {} is not (B, T, {})", name(), s.str(), c_);
  const int64_t B = s[0], T = s[1], C = local_c_, nh = local_heads_;
  qkv_out_ = qkv_.forward(x, ctx);  // (B, T, 3C)
  DTRAIN_CHECK(qkv_out_.shape() == (Shape{B, T, 3 * C}), "{}: qkv output {} for input {}", name(),
               qkv_out_.shape().str(), s.str());  // Linear narrows the batch, not T
  if (rope_theta_ > 0) ops::rope(ex(), qkv_out_, nh, rope_theta_, 0, false);  // q, k turned: what attention reads
  Tensor y = planned_view(y_, Shape{B, T, C});
  Tensor att = planned_view(att_, Shape{B, nh, T, T});
  ops::attention_forward(ex(), attn_plan_, qkv_out_, nh, att, y, scratch_);
  return proj_.forward(y, ctx);
}

Tensor CausalSelfAttention::backward(const Tensor& dy, const Ctx& ctx) {
  const int64_t B = dy.size(0), T = dy.size(1), C = local_c_, nh = local_heads_;
  Tensor dyatt = proj_.backward(dy, ctx);  // (B, T, C)
  Tensor dqkv = planned_view(dqkv_, Shape{B, T, 3 * C});
  Tensor att = planned_view(att_, Shape{B, nh, T, T});
  if (selective_) ops::attention_forward(ex(), attn_plan_, qkv_out_, nh, att, Tensor{}, scratch_);  // the probabilities again
  ops::attention_backward(ex(), attn_plan_, dyatt, qkv_out_, att, nh, scratch_, dqkv);
  if (rope_theta_ > 0) ops::rope(ex(), dqkv, nh, rope_theta_, 0, true);  // back to the product's output
  return qkv_.backward(dqkv, ctx);
}

Cost CausalSelfAttention::cost(const Shape& in) const {
  const int64_t B = in[0], T = in[1];
  const double products = 2.0 * B * local_heads_ * T * T * (c_ / n_head_);  // one (T,T,hs) product
  Cost c = qkv_.cost(in);
  c += proj_.cost(Shape{B, T, local_c_});
  c.fwd_flops += 2 * products;  // Q K^T, P V
  c.bwd_flops += 4 * products;  // dP, dQ, dK, dV
  c.act_bytes += (B * T * 3 * local_c_ + B * local_heads_ * T * T) * act_size();  // qkv output, probabilities
  c.recompute_bytes = B * local_heads_ * T * T * act_size();
  c.act_bytes += B * T * c_ * act_size();  // proj's output, read by the residual dropout (which keeps its own)
  const Shape qkv{B, T, 3 * local_c_};
  c.work_bytes += qkv.numel() * act_size() +  // dL/dqkv, the kernel's scratch
                  ops::attention_scratch(ex(), qkv, local_heads_, act()) * stat_size();
  return c;
}

}  // namespace dtrain
