// Dropout layer: identity in eval mode or when p = 0, otherwise inverted
// dropout with a mask keyed by (seed, step, layer name, global sample index,
// element index), so masks do not depend on how a batch is split into
// micro-batches or ranks. forward_add fuses a residual add (x + dropout(b)).
// Under sequence parallelism its input is this rank's slice of each sequence
// and it draws the mask elements one process draws for that slice.
#pragma once

#include "model/layer.h"
#include "model/seq_parallel.h"

namespace dtrain {

class Dropout : public Layer {
 public:
  // adds_residual: used through forward_add (which writes its own output
  // even when inactive); otherwise an inactive dropout hands its input on and
  // keeps no output buffer.
  Dropout(const std::string& name, double p, bool adds_residual = false);

  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, const Exec& ex) override;
  // Returns x itself when inactive.
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  // dL/dx for the last forward or forward_add (returns dy itself when inactive).
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

  // resid + dropout(x), into the layer's buffer. The gradient with respect to
  // resid is dy itself; backward gives the one with respect to x.
  Tensor forward_add(const Tensor& x, const Tensor& resid, const Ctx& ctx);

  double p() const { return p_; }
  void set_sequence_parallel(const SeqParallel& sp) { seq_ = sp; }

 private:
  bool active(const Ctx& ctx) const { return ctx.training && p_ > 0; }
  Tensor run(const Tensor& x, const Tensor* resid, const Ctx& ctx);

  double p_;
  bool adds_residual_;
  uint64_t name_hash_;
  SeqParallel seq_;
  bool active_ = false;   // whether the last forward dropped anything
  Tensor y_, mask_, dx_;  // (N, ...), u8 (N, ...) and (N, ...) when p > 0
};

}  // namespace dtrain
