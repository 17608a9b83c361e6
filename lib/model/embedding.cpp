#include "model/embedding.h"

#include "ops/ops.h"
#include "model/planned.h"

namespace dtrain {

TokenPositionEmbedding::TokenPositionEmbedding(ParamStore& ps, const std::string& name,
                                               int64_t vocab, int64_t context, int64_t c,
                                               double dropout, Communicator* tp, bool seq_parallel,
                                               bool learned_positions)
    : Layer(name),
      vocab_(vocab),
      context_(context),
      c_(c),
      drop_(name + ".drop", dropout),
      seq_(seq_parallel ? tp : nullptr) {
  drop_.set_sequence_parallel(seq_);
  if (tp && tp->size() > 1) {
    const int64_t t = tp->size();
    if (vocab % t != 0)
      throw ConfigError(fmt::format("{}: vocabulary {} is not divisible by the tensor-parallel degree {}",
                                    name, vocab, t));
    tp_ = tp;
    vocab_start_ = tp->rank() * (vocab / t);
    wte_ = &ps.add_sharded("wte.weight", vocab_shard(vocab, c, *tp), Init::normal(0.02), true);
  } else {
    wte_ = &ps.add("wte.weight", Shape{vocab, c}, Init::normal(0.02), true);
  }
  if (learned_positions) wpe_ = &ps.add("wpe.weight", Shape{context, c}, Init::normal(0.02), true);
}

Shard TokenPositionEmbedding::vocab_shard(int64_t vocab, int64_t c, const Communicator& tp) {
  return Shard{.dim = 0, .parts = tp.size(), .index = tp.rank(), .blocks = {}, .full = Shape{vocab, c}};
}

Shape TokenPositionEmbedding::output_shape(const Shape& in) const {
  DTRAIN_CHECK(in.rank() == 2, "{}: token input {} is not (B, T)", name(), in.str());
  const Shape full{in[0], in[1], c_};
  return seq_.on() ? seq_.local(full) : full;
}

void TokenPositionEmbedding::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  const Shape full{in[0], in[1], c_};
  y_ = Tensor::empty(full, act, ex.device);
  drop_.plan(output_shape(in), act, ex);
  if (seq_.on()) {
    local_ = Tensor::empty(seq_.local(full), act, ex.device);
    dfull_ = SeqParallel::shared(arena_, "dfull", full, act, ex.device);  // within backward only
    scratch_ = seq_.scratch(arena_, seq_.local(full), act, ex.device);
  }
}

Tensor TokenPositionEmbedding::forward(const Tensor& tokens, const Ctx& ctx) {
  const Shape out{tokens.size(0), tokens.size(1), c_};
  const int64_t B = out[0], T = out[1];
  if (T > context_)
    throw InputError(fmt::format("{}: sequence of {} tokens exceeds the context length {}", name(),
                                 T, context_));
  // Token files are checked against the vocabulary when opened (data/check);
  // host tensors are checked again here (no exception may leave an OpenMP
  // region of the kernel). A GPU's tokens come from those checked files.
  if (tokens.device().is_cpu()) {
    const int32_t* tok = tokens.data<int32_t>();
    for (int64_t i = 0; i < B * T; ++i)
      if (tok[i] < 0 || tok[i] >= vocab_)
        throw InputError(fmt::format("{}: token id {} at position {} is outside the vocabulary [0, {})",
                                     name(), tok[i], i, vocab_));
  }
  tokens_ = tokens;
  Tensor y = planned_view(y_, out);
  if (seq_.on()) {
    ops::token_embedding_shard_forward(ex(), tokens, wte_->compute, vocab_start_, y);
    Tensor local = planned_view(local_, seq_.local(out));
    seq_.scatter(ex(), y, scratch_, local);  // this rank's positions, each row from its token's rank
    const int64_t t0 = seq_.first_position(local.shape());
    if (wpe_) ops::position_embedding_add(ex(), wpe_->compute.narrow0(t0, t0 + local.size(1)), local);
    return drop_.forward(local, ctx);
  }
  if (tp_) {
    ops::token_embedding_shard_forward(ex(), tokens, wte_->compute, vocab_start_, y);
    all_reduce(*tp_, y);  // each row from the one rank holding its token
    if (wpe_) ops::position_embedding_add(ex(), wpe_->compute, y);
    return drop_.forward(y, ctx);
  }
  if (wpe_)
    ops::embedding_forward(ex(), tokens, wte_->compute, wpe_->compute, y);
  else
    ops::token_embedding_shard_forward(ex(), tokens, wte_->compute, 0, y);  // every row: the whole vocabulary
  return drop_.forward(y, ctx);
}

Tensor TokenPositionEmbedding::backward(const Tensor& dy, const Ctx& ctx) {
  Tensor g = drop_.backward(dy, ctx);
  if (seq_.on()) {  // every position's gradient: wte's rows see all tokens, wpe all positions
    Tensor full = planned_view(dfull_, seq_.full(g.shape()));
    seq_.gather(ex(), g, scratch_, full);
    g = full;
  }
  ops::embedding_backward(ex(), g, tokens_, tp_ ? vocab_start_ : 0, wte_->grad,
                          wpe_ ? wpe_->grad : Tensor{});
  return Tensor{};
}

Cost TokenPositionEmbedding::cost(const Shape& in) const {
  Cost c = drop_.cost(output_shape(in));
  c.params = wte_->shape.numel() + (wpe_ ? context_ * c_ : 0);  // this rank's rows of wte
  c.act_bytes += in.numel() * 4;  // the token ids
  if (seq_.on()) {  // forward reduce-scatter, backward all-gather of (B, T, C): half an all-reduce each
    c.shared_bytes = 2 * in.numel() * c_ * act_size();  // the model's dfull and packed scratch
    c.tp_fwd_calls = c.tp_bwd_calls = 0.5;
    c.tp_fwd_bytes = c.tp_bwd_bytes = in.numel() * c_ * 4 / 2;
  } else if (tp_) {  // forward all-reduce of the (B, T, C) rows each rank looked up
    c.tp_fwd_calls = 1;
    c.tp_fwd_bytes = in.numel() * c_ * 4;
  }
  return c;
}

}  // namespace dtrain
