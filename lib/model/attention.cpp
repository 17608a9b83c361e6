#include "model/attention.h"

#include "ops/ops.h"
#include "model/planned.h"

namespace dtrain {

namespace {

int64_t tp_size(Communicator* tp) { return tp ? tp->size() : 1; }

// This rank's width C/t, after checking the shapes (before the Linears are built).
int64_t local_width(const std::string& name, int64_t c, ops::Heads h, Communicator* tp, double rope_theta) {
  if (h.q <= 0 || c % h.q != 0)
    throw ConfigError(fmt::format("{}: n_embd {} is not divisible by n_head {}", name, c, h.q));
  if (h.kv <= 0 || h.q % h.kv != 0)
    throw ConfigError(fmt::format("{}: n_head {} is not a multiple of n_kv_head {}: each key/value head serves "
                                  "a whole group of query heads", name, h.q, h.kv));
  if (rope_theta > 0 && (c / h.q) % 2 != 0)
    throw ConfigError(fmt::format("{}: rotary embeddings turn pairs of a head's features, and its width "
                                  "n_embd / n_head = {} is odd", name, c / h.q));
  if (h.q % tp_size(tp) != 0)
    throw ConfigError(fmt::format("{}: n_head {} is not divisible by the tensor-parallel degree {}",
                                  name, h.q, tp_size(tp)));
  if (h.kv % tp_size(tp) != 0)
    throw ConfigError(fmt::format("{}: n_kv_head {} is not divisible by the tensor-parallel degree {}",
                                  name, h.kv, tp_size(tp)));
  return c / tp_size(tp);
}

int64_t kv_width(int64_t c, ops::Heads h) { return h.q > 0 ? c / h.q * h.kv : 0; }

}  // namespace

CausalSelfAttention::CausalSelfAttention(ParamStore& ps, const std::string& name, int64_t c,
                                         ops::Heads heads, bool bias, double proj_std,
                                         Communicator* tp, bool seq_parallel, const math::Rope& rope)
    : Layer(name),
      c_(c),
      heads_(heads),
      local_c_(local_width(name, c, heads, tp, rope.theta)),
      local_heads_(heads.q / tp_size(tp), heads.kv / tp_size(tp)),
      local_qkv_((c + 2 * kv_width(c, heads)) / tp_size(tp)),
      rope_(rope),
      qkv_(ps, name + ".qkv", c, c + 2 * kv_width(c, heads), bias, Init::normal(0.02), Init::zeros(),
           {.split = TpSplit::column,
            .tp = tp,
            .blocks = {c, kv_width(c, heads), kv_width(c, heads)},  // Q | K | V
            .sequence_parallel = seq_parallel}),
      proj_(ps, name + ".proj", c, c, bias, Init::normal(proj_std), Init::zeros(),
            {.split = TpSplit::row, .tp = tp, .blocks = {}, .sequence_parallel = seq_parallel}) {}

void CausalSelfAttention::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  DTRAIN_CHECK(in.rank() == 3 && in[2] == c_, "{}: input {} is not (B, T, {})", name(), in.str(), c_);
  const int64_t B = in[0], T = in[1];
  const Shape heads{B, T, local_c_};  // this rank's heads side by side
  qkv_.plan(in, act, ex);
  proj_.plan(heads, act, ex);
  // The probabilities (B, nh, T, T): with selective recomputation one buffer
  // for every attention layer, refilled by each backward.
  const Shape probs{B, local_heads_.q, T, T};
  att_ = selective_ ? selective_->get("attn.probs", probs, act, ex.device) : buffer("att", probs, act, ex);
  y_ = buffer("y", heads, act, ex);
  const Shape qkv{B, T, local_qkv_};
  dqkv_ = work_buffer("dqkv", qkv, act, ex);
  attn_plan_ = ops::AttentionPlan(ex, qkv, local_heads_, act);
  scratch_ = work_buffer("scratch", Shape{ops::attention_scratch(ex, qkv, local_heads_, act)},
                    ops::compute_dtype(act), ex);
}

Tensor CausalSelfAttention::forward(const Tensor& x, const Ctx& ctx) {
  const Shape& s = x.shape();
  DTRAIN_CHECK(s.rank() == 3 && s[2] == c_, "{}: input {} is not (B, T, {})", name(), s.str(), c_);
  const int64_t B = s[0], T = s[1], C = local_c_, nh = local_heads_.q;
  qkv_out_ = qkv_.forward(x, ctx);  // (B, T, W)
  DTRAIN_CHECK(qkv_out_.shape() == (Shape{B, T, local_qkv_}), "{}: qkv output {} for input {}", name(),
               qkv_out_.shape().str(), s.str());  // Linear narrows the batch, not T
  if (rope_.theta > 0) ops::rope(ex(), qkv_out_, local_heads_, rope_, 0, false);  // q, k turned: what attention reads
  Tensor y = planned_view(y_, Shape{B, T, C});
  Tensor att = planned_view(att_, Shape{B, nh, T, T});
  ops::attention_forward(ex(), attn_plan_, qkv_out_, local_heads_, att, y, scratch_);
  return proj_.forward(y, ctx);
}

Tensor CausalSelfAttention::backward(const Tensor& dy, const Ctx& ctx) {
  const int64_t B = dy.size(0), T = dy.size(1), nh = local_heads_.q;
  Tensor dyatt = proj_.backward(dy, ctx);  // (B, T, C)
  Tensor dqkv = planned_view(dqkv_, Shape{B, T, local_qkv_});
  Tensor att = planned_view(att_, Shape{B, nh, T, T});
  if (selective_) ops::attention_forward(ex(), attn_plan_, qkv_out_, local_heads_, att, Tensor{}, scratch_);  // the probabilities again
  ops::attention_backward(ex(), attn_plan_, dyatt, qkv_out_, att, local_heads_, scratch_, dqkv);
  if (rope_.theta > 0) ops::rope(ex(), dqkv, local_heads_, rope_, 0, true);  // back to the product's output
  return qkv_.backward(dqkv, ctx);
}

Cost CausalSelfAttention::cost(const Shape& in) const {
  const int64_t B = in[0], T = in[1], nh = local_heads_.q;
  const double products = 2.0 * B * nh * T * T * (c_ / heads_.q);  // one (T,T,hs) product
  Cost c = qkv_.cost(in);
  c += proj_.cost(Shape{B, T, local_c_});
  c.fwd_flops += 2 * products;  // Q K^T, P V
  c.bwd_flops += 4 * products;  // dP, dQ, dK, dV
  c.act_bytes += (B * T * local_qkv_ + B * nh * T * T) * act_size();  // qkv output, probabilities
  c.recompute_bytes = B * nh * T * T * act_size();
  c.act_bytes += B * T * c_ * act_size();  // proj's output, read by the residual dropout (which keeps its own)
  const Shape qkv{B, T, local_qkv_};
  c.work_bytes += qkv.numel() * act_size() +  // dL/dqkv, the kernel's scratch
                  ops::attention_scratch(ex(), qkv, local_heads_, act()) * stat_size();
  return c;
}

}  // namespace dtrain
