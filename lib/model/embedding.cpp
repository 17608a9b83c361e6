#include "model/embedding.h"

#include "kernels/cpu/embedding.h"
#include "model/planned.h"

namespace dtrain {

TokenPositionEmbedding::TokenPositionEmbedding(ParamStore& ps, const std::string& name,
                                               int64_t vocab, int64_t context, int64_t c,
                                               double dropout)
    : Layer(name), vocab_(vocab), context_(context), c_(c), drop_(name + ".drop", dropout) {
  wte_ = &ps.add("wte.weight", Shape{vocab, c}, Init::normal(0.02), true);
  wpe_ = &ps.add("wpe.weight", Shape{context, c}, Init::normal(0.02), true);
}

Shape TokenPositionEmbedding::output_shape(const Shape& in) const {
  DTRAIN_CHECK(in.rank() == 2, "{}: token input {} is not (B, T)", name(), in.str());
  return Shape{in[0], in[1], c_};
}

void TokenPositionEmbedding::plan(const Shape& in, DType act, Device device) {
  y_ = Tensor::empty(output_shape(in), act, device);
  drop_.plan(output_shape(in), act, device);
}

Tensor TokenPositionEmbedding::forward(const Tensor& tokens, const Ctx& ctx) {
  const Shape out = output_shape(tokens.shape());
  const int64_t B = out[0], T = out[1];
  if (T > context_)
    throw InputError(fmt::format("{}: sequence of {} tokens exceeds the context length {}", name(),
                                 T, context_));
  const int32_t* tok = tokens.data<int32_t>();
  for (int64_t i = 0; i < B * T; ++i)  // checked here: no exception may leave an OpenMP region
    if (tok[i] < 0 || tok[i] >= vocab_)
      throw InputError(fmt::format("{}: token id {} at position {} is outside the vocabulary [0, {})",
                                   name(), tok[i], i, vocab_));
  tokens_ = tokens;
  Tensor y = planned_view(y_, out);
  dispatch_float(y.dtype(), [&](auto t) {
    using F = decltype(t);
    cpu::embedding_forward<F>(tok, wte_->value.data<F>(), wpe_->value.data<F>(), B, T, c_,
                              y.data<F>());
  });
  return drop_.forward(y, ctx);
}

Tensor TokenPositionEmbedding::backward(const Tensor& dy, const Ctx& ctx) {
  Tensor g = drop_.backward(dy, ctx);
  dispatch_float(g.dtype(), [&](auto t) {
    using F = decltype(t);
    cpu::embedding_backward<F>(g.data<F>(), tokens_.data<int32_t>(), g.size(0), g.size(1), c_,
                               wte_->grad.data<F>(), wpe_->grad.data<F>());
  });
  return Tensor{};
}

Cost TokenPositionEmbedding::cost(const Shape& in) const {
  Cost c = drop_.cost(output_shape(in));
  c.params = vocab_ * c_ + context_ * c_;
  c.act_bytes += in.numel() * 4;  // the token ids
  return c;
}

}  // namespace dtrain
