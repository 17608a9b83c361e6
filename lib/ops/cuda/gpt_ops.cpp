// The GPT's memory-bound ops on a GPU: checks and the launchers of
// lib/kernels/cuda (see gpt_ops.h). Shapes are checked as the CPU side
// checks them; a dtype the kernels do not take is refused in one line.
#include "ops/cuda/gpt_ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "core/device.h"
#include "core/error.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/layernorm.h"
#include "kernels/cuda/optim.h"
#include "kernels/cuda/reduce.h"
#include "kernels/cuda/xent.h"

namespace dtrain::ops::cuda_ops {

namespace {

namespace kc = dtrain::cuda::gpt;  // the launchers
using kc::Act;

void on_device(const Exec& ex, const char* op, std::initializer_list<Tensor> ts) {
  for (const Tensor& t : ts) ex.check(t, op);
}

// The activation dtype of y; every defined tensor in `same` must share it.
Act act(const char* op, const Tensor& y, std::initializer_list<Tensor> same = {}) {
  for (const Tensor& t : same)
    if (t.defined() && t.dtype() != y.dtype())
      throw InternalError(fmt::format("{}: {} operand with a {} output", op, dtype_name(t.dtype()),
                                      dtype_name(y.dtype())));
  if (y.dtype() == DType::f32) return Act::f32;
  if (y.dtype() == DType::bf16) return Act::bf16;
  throw InternalError(fmt::format("{}: no {} kernel on cuda (f32 and bf16 only; f64 runs on the CPU)",
                                  op, dtype_name(y.dtype())));
}

// A tensor the kernels read as `want` (statistics, gradients, ids).
void need(const char* op, const char* what, const Tensor& t, DType want, int64_t min_numel) {
  DTRAIN_CHECK(t.defined(), "{}: {} undefined", op, what);
  if (t.dtype() != want || t.numel() < min_numel)
    throw InternalError(fmt::format("{}: {} is {} of {} elements, needs {} of at least {}", op, what,
                                    dtype_name(t.dtype()), t.numel(), dtype_name(want), min_numel));
}

const void* cptr(const Tensor& t) { return t.defined() ? t.raw() : nullptr; }
float* fptr(const Tensor& t) { return t.defined() ? static_cast<float*>(t.raw()) : nullptr; }
const int32_t* iptr(const Tensor& t) { return static_cast<const int32_t*>(t.raw()); }

}  // namespace

// ---------------------------------------------------------------- elementwise

void add(const Exec& ex, const Tensor& a, const Tensor& b, const Tensor& y) {
  on_device(ex, "add", {a, b, y});
  const Act t = act("add", y, {a, b});
  DTRAIN_CHECK(a.numel() == y.numel() && b.numel() == y.numel(), "add: {} + {} into {}",
               a.shape().str(), b.shape().str(), y.shape().str());
  kc::add(t, a.raw(), b.raw(), y.numel(), y.raw(), ex.stream);
}

void scale(const Exec& ex, const Tensor& x, double s) {
  on_device(ex, "scale", {x});
  kc::scale(act("scale", x), x.raw(), x.numel(), static_cast<float>(s), ex.stream);
}

void fill_columns(const Exec& ex, const Tensor& x, int64_t from, double value) {
  on_device(ex, "fill_columns", {x});
  const int64_t v = x.shape()[-1];
  kc::fill_columns(act("fill_columns", x), x.raw(), x.numel() / v, v, from, static_cast<float>(value), ex.stream);
}

void convert(const Exec& ex, const Tensor& src, const Tensor& dst) {
  on_device(ex, "convert", {src, dst});
  DTRAIN_CHECK(src.numel() == dst.numel(), "convert: {} elements into {}", src.numel(), dst.numel());
  if (src.dtype() == dst.dtype()) {
    if (src.raw() != dst.raw()) gpu::memcpy(dst.raw(), src.raw(), dst.bytes(), ex.stream);
    return;
  }
  if (src.dtype() == DType::f32 && dst.dtype() == DType::bf16)
    return kc::f32_to_bf16(static_cast<const float*>(src.raw()), src.numel(),
                             static_cast<bf16*>(dst.raw()), ex.stream);
  if (src.dtype() == DType::bf16 && dst.dtype() == DType::f32)
    return kc::bf16_to_f32(static_cast<const bf16*>(src.raw()), src.numel(),
                             static_cast<float*>(dst.raw()), ex.stream);
  throw InternalError(fmt::format("convert: no {} -> {} conversion on cuda", dtype_name(src.dtype()),
                                  dtype_name(dst.dtype())));
}

void broadcast_rows(const Exec& ex, const Tensor& b, const Tensor& y) {
  on_device(ex, "broadcast_rows", {b, y});
  const int64_t m = b.numel();
  DTRAIN_CHECK(m > 0 && y.numel() % m == 0, "broadcast_rows: {} into {}", b.shape().str(), y.shape().str());
  kc::broadcast_rows(act("broadcast_rows", y, {b}), b.raw(), y.numel(), m, y.raw(), ex.stream);
}

void add_rows(const Exec& ex, const Tensor& b, const Tensor& y) {
  on_device(ex, "add_rows", {b, y});
  const int64_t m = b.numel();
  DTRAIN_CHECK(m > 0 && y.numel() % m == 0, "add_rows: {} into {}", b.shape().str(), y.shape().str());
  kc::add_rows(act("add_rows", y, {b}), b.raw(), y.numel(), m, y.raw(), ex.stream);
}

void sum_rows_acc(const Exec& ex, const Tensor& x, const Tensor& acc) {
  on_device(ex, "sum_rows_acc", {x, acc});
  const int64_t m = acc.numel();
  DTRAIN_CHECK(m > 0 && x.numel() % m == 0, "sum_rows_acc: {} into {}", x.shape().str(), acc.shape().str());
  const Act t = act("sum_rows_acc", x);
  need("sum_rows_acc", "acc", acc, DType::f32, m);
  kc::sum_rows_acc(t, x.raw(), x.numel() / m, m, fptr(acc), ex.stream);
}

void gelu_forward(const Exec& ex, const Tensor& x, const Tensor& y) {
  on_device(ex, "gelu", {x, y});
  DTRAIN_CHECK(x.numel() == y.numel(), "gelu: {} into {}", x.shape().str(), y.shape().str());
  kc::gelu_forward(act("gelu", y, {x}), x.raw(), x.numel(), y.raw(), ex.stream);
}

void gelu_backward(const Exec& ex, const Tensor& x, const Tensor& dy, const Tensor& dx) {
  on_device(ex, "gelu_backward", {x, dy, dx});
  DTRAIN_CHECK(x.numel() == dy.numel() && x.numel() == dx.numel(), "gelu_backward: {}, {} into {}",
               x.shape().str(), dy.shape().str(), dx.shape().str());
  kc::gelu_backward(act("gelu_backward", dx, {x, dy}), x.raw(), dy.raw(), x.numel(), dx.raw(),
                      ex.stream);
}

void swiglu_forward(const Exec& ex, const Tensor& f, const Tensor& g) {
  on_device(ex, "swiglu", {f, g});
  const Act t = act("swiglu", g, {f});
  const int64_t h = g.shape()[-1], n = h > 0 ? g.numel() / h : 0;
  DTRAIN_CHECK(f.numel() == 2 * g.numel() && f.shape()[-1] == 2 * h, "swiglu: {} into {}", f.shape().str(),
               g.shape().str());
  kc::swiglu_forward(t, f.raw(), n, h, g.raw(), ex.stream);
}

void swiglu_backward(const Exec& ex, const Tensor& f, const Tensor& dg, const Tensor& df) {
  on_device(ex, "swiglu_backward", {f, dg, df});
  const Act t = act("swiglu_backward", df, {f, dg});
  const int64_t h = dg.shape()[-1], n = h > 0 ? dg.numel() / h : 0;
  DTRAIN_CHECK(f.numel() == 2 * dg.numel() && df.numel() == f.numel() && f.shape()[-1] == 2 * h,
               "swiglu_backward: {} and {} into {}", f.shape().str(), dg.shape().str(), df.shape().str());
  kc::swiglu_backward(t, f.raw(), dg.raw(), n, h, df.raw(), ex.stream);
}

void dropout_forward(const Exec& ex, const Tensor& x, const Tensor& resid, double p, uint64_t key,
                     int64_t first_sample, int64_t first_element, const Tensor& mask, const Tensor& y) {
  on_device(ex, "dropout", {x, resid, mask, y});
  const Act t = act("dropout", y, {x, resid});
  need("dropout", "mask", mask, DType::u8, x.numel());
  DTRAIN_CHECK(y.numel() == x.numel() && (!resid.defined() || resid.numel() == x.numel()),
               "dropout: {} into {}", x.shape().str(), y.shape().str());
  const int64_t samples = x.size(0);
  kc::dropout_forward(t, x.raw(), cptr(resid), samples, samples ? x.numel() / samples : 0,
                        math::dropout_threshold(p), static_cast<float>(1.0 / (1.0 - p)), key,
                        first_sample, first_element, static_cast<uint8_t*>(mask.raw()), y.raw(), ex.stream);
}

void dropout_backward(const Exec& ex, const Tensor& dy, const Tensor& mask, double p, const Tensor& dx) {
  on_device(ex, "dropout_backward", {dy, mask, dx});
  const Act t = act("dropout_backward", dx, {dy});
  need("dropout_backward", "mask", mask, DType::u8, dy.numel());
  DTRAIN_CHECK(dx.numel() == dy.numel(), "dropout_backward: {} into {}", dy.shape().str(), dx.shape().str());
  kc::dropout_backward(t, dy.raw(), static_cast<const uint8_t*>(mask.raw()), dy.numel(),
                         static_cast<float>(1.0 / (1.0 - p)), dx.raw(), ex.stream);
}

// ---------------------------------------------------------------- normalisation

void layernorm_forward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                       const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  on_device(ex, "layernorm", {x, w, b, y, mean, rstd});
  const Act t = act("layernorm", y, {x, w, b});
  const int64_t c = w.numel(), rows = c > 0 ? x.numel() / c : 0;
  DTRAIN_CHECK(c > 0 && x.shape()[-1] == c && y.numel() == x.numel(), "layernorm: input {} for width {}",
               x.shape().str(), c);
  need("layernorm", "mean", mean, DType::f32, rows);
  need("layernorm", "rstd", rstd, DType::f32, rows);
  kc::layernorm_forward(t, x.raw(), w.raw(), cptr(b), rows, c, static_cast<float>(eps), y.raw(),
                          fptr(mean), fptr(rstd), ex.stream);
}

void layernorm_backward(const Exec& ex, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dres, const Tensor& dx,
                        const Tensor& dw, const Tensor& db, const Tensor& scratch) {
  on_device(ex, "layernorm_backward", {dy, x, w, mean, rstd, dres, dx, dw, db, scratch});
  const Act t = act("layernorm_backward", dx, {dy, x, w, dres});
  const int64_t c = w.numel(), rows = c > 0 ? dy.numel() / c : 0;
  DTRAIN_CHECK(c > 0 && x.numel() == dy.numel() && dx.numel() == dy.numel(),
               "layernorm_backward: dy {} for width {}", dy.shape().str(), c);
  need("layernorm_backward", "mean", mean, DType::f32, rows);
  need("layernorm_backward", "rstd", rstd, DType::f32, rows);
  need("layernorm_backward", "dw", dw, DType::f32, c);
  if (db.defined()) need("layernorm_backward", "db", db, DType::f32, c);
  need("layernorm_backward", "scratch", scratch, DType::f32, cpu::layernorm_scratch_size(c));
  const int64_t chunks = std::min<int64_t>(rows, cpu::kLayerNormChunks);
  kc::layernorm_backward(t, dy.raw(), x.raw(), w.raw(), fptr(mean), fptr(rstd), cptr(dres), rows, c,
                           dx.raw(), fptr(dw), fptr(db), fptr(scratch), chunks, ex.stream);
}

void rmsnorm_forward(const Exec& ex, const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd) {
  on_device(ex, "rmsnorm", {x, w, y, rstd});
  const Act t = act("rmsnorm", y, {x, w});
  const int64_t c = w.numel(), rows = c > 0 ? x.numel() / c : 0;
  DTRAIN_CHECK(c > 0 && x.shape()[-1] == c && y.numel() == x.numel(), "rmsnorm: input {} for width {}",
               x.shape().str(), c);
  need("rmsnorm", "rstd", rstd, DType::f32, rows);
  kc::rmsnorm_forward(t, x.raw(), w.raw(), rows, c, static_cast<float>(eps), y.raw(), fptr(rstd),
                      ex.stream);
}

void rmsnorm_backward(const Exec& ex, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, const Tensor& dres, const Tensor& dx, const Tensor& dw,
                      const Tensor& scratch) {
  on_device(ex, "rmsnorm_backward", {dy, x, w, rstd, dres, dx, dw, scratch});
  const Act t = act("rmsnorm_backward", dx, {dy, x, w, dres});
  const int64_t c = w.numel(), rows = c > 0 ? dy.numel() / c : 0;
  DTRAIN_CHECK(c > 0 && x.numel() == dy.numel() && dx.numel() == dy.numel() &&
                   (!dres.defined() || dres.numel() == dy.numel()),
               "rmsnorm_backward: dy {} for width {}", dy.shape().str(), c);
  need("rmsnorm_backward", "rstd", rstd, DType::f32, rows);
  need("rmsnorm_backward", "dw", dw, DType::f32, c);
  need("rmsnorm_backward", "scratch", scratch, DType::f32, cpu::rmsnorm_scratch_size(c));
  const int64_t chunks = std::min<int64_t>(rows, cpu::kLayerNormChunks);
  kc::rmsnorm_backward(t, dy.raw(), x.raw(), w.raw(), fptr(rstd), cptr(dres), rows, c, dx.raw(), fptr(dw),
                       fptr(scratch), chunks, ex.stream);
}

// ---------------------------------------------------------------- rotary embedding

void rope(const Exec& ex, const Tensor& qkv, Heads heads, const math::Rope& rope, int64_t pos0, bool inverse) {
  on_device(ex, "rope", {qkv});
  const Act t = act("rope", qkv);
  DTRAIN_CHECK(qkv.rank() == 3 && heads.fits(qkv.size(2), /*even=*/true), "rope: qkv {} with {} (each of even width)",
               qkv.shape().str(), heads.str());
  const int64_t c = qkv.size(2) / heads.row_heads() * heads.q;
  kc::rope(t, qkv.raw(), qkv.size(0), qkv.size(1), c, heads.q, heads.kv, rope, pos0, inverse, ex.stream);
}

// ---------------------------------------------------------------- embeddings

void embedding_forward(const Exec& ex, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& y) {
  on_device(ex, "embedding", {tokens, wte, wpe, y});
  const Act t = act("embedding", y, {wte, wpe});
  const int64_t B = y.size(0), T = y.size(1), C = y.size(2);
  need("embedding", "tokens", tokens, DType::i32, B * T);
  DTRAIN_CHECK(wte.size(-1) == C && wpe.size(-1) == C && wpe.size(0) >= T,
               "embedding: wte {}, wpe {} for output {}", wte.shape().str(), wpe.shape().str(),
               y.shape().str());
  kc::embedding_forward(t, iptr(tokens), wte.raw(), wpe.raw(), B, T, C, y.raw(), ex.stream);
}

void token_embedding_shard_forward(const Exec& ex, const Tensor& tokens, const Tensor& wte,
                                   int64_t v0, const Tensor& y) {
  on_device(ex, "embedding", {tokens, wte, y});
  const Act t = act("embedding", y, {wte});
  const int64_t C = y.size(-1), n = tokens.numel();
  need("embedding", "tokens", tokens, DType::i32, n);
  DTRAIN_CHECK(wte.size(-1) == C && y.numel() == n * C, "embedding: wte {} for output {}",
               wte.shape().str(), y.shape().str());
  kc::token_embedding_shard_forward(t, iptr(tokens), wte.raw(), v0, wte.size(0), n, C, y.raw(),
                                      ex.stream);
}

void position_embedding_add(const Exec& ex, const Tensor& wpe, const Tensor& y) {
  on_device(ex, "embedding", {wpe, y});
  const Act t = act("embedding", y, {wpe});
  DTRAIN_CHECK(wpe.size(-1) == y.size(2) && wpe.size(0) >= y.size(1), "embedding: wpe {} for {}",
               wpe.shape().str(), y.shape().str());
  kc::position_embedding_add(t, wpe.raw(), y.size(0), y.size(1), y.size(2), y.raw(), ex.stream);
}

void embedding_backward(const Exec& ex, const Tensor& dy, const Tensor& tokens, int64_t v0,
                        const Tensor& dwte, const Tensor& dwpe) {
  on_device(ex, "embedding_backward", {dy, tokens, dwte, dwpe});
  const Act t = act("embedding_backward", dy);
  const int64_t B = dy.size(0), T = dy.size(1), C = dy.size(2);
  need("embedding_backward", "tokens", tokens, DType::i32, B * T);
  need("embedding_backward", "dwte", dwte, DType::f32, C);
  DTRAIN_CHECK(dwte.size(-1) == C, "embedding_backward: dwte {} for dy {}", dwte.shape().str(),
               dy.shape().str());
  if (dwpe.defined()) need("embedding_backward", "dwpe", dwpe, DType::f32, T * C);
  kc::embedding_backward(t, dy.raw(), iptr(tokens), B, T, C, v0, dwte.size(0), fptr(dwte),
                           fptr(dwpe), ex.stream);
}

// ---------------------------------------------------------------- losses

LossTotals read_and_reset(const Exec& ex, LossAccum& acc) {
  on_device(ex, "loss statistics", {acc.sums});
  need("loss statistics", "sums", acc.sums, DType::f64, 5);
  double s[5] = {};
  gpu::memcpy(s, acc.sums.raw(), sizeof s, ex.stream);
  gpu::stream_sync(ex.stream);
  gpu::memset(acc.sums.raw(), 0, sizeof s, ex.stream);
  return LossTotals{s[0], s[1], static_cast<int64_t>(s[2]), static_cast<int64_t>(s[3]),
                    static_cast<int64_t>(s[4])};
}

void softmax_xent_forward(const Exec& ex, const Tensor& logits, const Tensor& targets,
                          const Tensor& row_max, const Tensor& row_sum, const Tensor& row_loss,
                          const Tensor& argmax, LossAccum& acc) {
  const char* op = "cross_entropy";
  on_device(ex, op, {logits, targets, row_max, row_sum, row_loss, argmax, acc.sums});
  const Act t = act(op, logits);
  const int64_t v = logits.shape()[-1], rows = logits.numel() / v;
  DTRAIN_CHECK(targets.numel() == rows, "cross entropy: {} targets for logits {}", targets.numel(),
               logits.shape().str());
  need(op, "targets", targets, DType::i32, rows);
  need(op, "row_max", row_max, DType::f32, rows);
  need(op, "row_sum", row_sum, DType::f32, rows);
  need(op, "row_loss", row_loss, DType::f64, rows);
  need(op, "argmax", argmax, DType::i32, rows);
  need(op, "loss sums", acc.sums, DType::f64, 5);
  kc::xent_forward(t, logits.raw(), iptr(targets), rows, v, fptr(row_max), fptr(row_sum),
                     static_cast<double*>(row_loss.raw()), static_cast<int32_t*>(argmax.raw()), ex.stream);
  kc::loss_accumulate(static_cast<const double*>(row_loss.raw()), iptr(argmax), iptr(targets), rows,
                        static_cast<double*>(acc.sums.raw()), ex.stream);
}

void softmax_xent_backward(const Exec& ex, const Tensor& logits, const Tensor& targets,
                           const Tensor& row_max, const Tensor& row_sum, double scale,
                           const Tensor& dx) {
  const char* op = "cross_entropy_backward";
  on_device(ex, op, {logits, targets, row_max, row_sum, dx});
  const Act t = act(op, dx, {logits});
  const int64_t v = logits.shape()[-1], rows = logits.numel() / v;
  DTRAIN_CHECK(dx.numel() == logits.numel(), "{}: dx {} for logits {}", op, dx.shape().str(),
               logits.shape().str());
  need(op, "targets", targets, DType::i32, rows);
  need(op, "row_max", row_max, DType::f32, rows);
  need(op, "row_sum", row_sum, DType::f32, rows);
  kc::xent_backward(t, logits.raw(), iptr(targets), fptr(row_max), fptr(row_sum), rows, v,
                      static_cast<float>(scale), dx.raw(), ex.stream);
}

void vp_row_max(const Exec& ex, const Tensor& logits, const Tensor& row_max) {
  const char* op = "cross_entropy";
  on_device(ex, op, {logits, row_max});
  const int64_t v = logits.shape()[-1], rows = logits.numel() / v;
  need(op, "row_max", row_max, DType::f32, rows);
  kc::vp_row_max(act(op, logits), logits.raw(), rows, v, fptr(row_max), ex.stream);
}

void vp_exp_sums(const Exec& ex, const Tensor& logits, const Tensor& targets, int64_t v0,
                 const Tensor& row_max, const Tensor& probs, const Tensor& sums, const Tensor& argmax) {
  const char* op = "cross_entropy";
  on_device(ex, op, {logits, targets, row_max, probs, sums, argmax});
  const Act t = act(op, probs, {logits});
  const int64_t v = logits.shape()[-1], rows = logits.numel() / v;
  DTRAIN_CHECK(probs.numel() >= logits.numel(), "{}: probs of {} for logits {}", op, probs.numel(),
               logits.shape().str());
  need(op, "targets", targets, DType::i32, rows);
  need(op, "row_max", row_max, DType::f32, rows);
  need(op, "sums", sums, DType::f32, 2 * rows);
  need(op, "argmax", argmax, DType::i32, rows);
  kc::vp_exp_sums(t, logits.raw(), iptr(targets), v0, rows, v, fptr(row_max), probs.raw(),
                    fptr(sums), static_cast<int32_t*>(argmax.raw()), ex.stream);
}

void vp_finish(const Exec& ex, const Tensor& targets, const Tensor& row_max, const Tensor& sums,
               const Tensor& argmax, const Tensor& probs, const Tensor& row_loss, LossAccum& acc) {
  const char* op = "cross_entropy";
  on_device(ex, op, {targets, row_max, sums, argmax, probs, row_loss, acc.sums});
  const Act t = act(op, probs);
  const int64_t rows = targets.numel();
  DTRAIN_CHECK(rows > 0 && probs.numel() % rows == 0, "{}: probs {} for {} targets", op,
               probs.shape().str(), rows);
  const int64_t v = probs.numel() / rows;
  need(op, "targets", targets, DType::i32, rows);
  need(op, "row_max", row_max, DType::f32, rows);
  need(op, "sums", sums, DType::f32, 2 * rows);
  need(op, "argmax", argmax, DType::i32, rows);
  need(op, "row_loss", row_loss, DType::f64, rows);
  need(op, "loss sums", acc.sums, DType::f64, 5);
  kc::vp_finish(t, rows, v, fptr(row_max), fptr(sums), probs.raw(),
                  static_cast<double*>(row_loss.raw()), ex.stream);
  kc::loss_accumulate(static_cast<const double*>(row_loss.raw()), iptr(argmax), iptr(targets), rows,
                        static_cast<double*>(acc.sums.raw()), ex.stream);
}

void vp_backward(const Exec& ex, const Tensor& targets, int64_t v0, double scale, const Tensor& probs) {
  const char* op = "cross_entropy_backward";
  on_device(ex, op, {targets, probs});
  const int64_t rows = targets.numel();
  DTRAIN_CHECK(rows > 0 && probs.numel() % rows == 0, "{}: probs {} for {} targets", op,
               probs.shape().str(), rows);
  need(op, "targets", targets, DType::i32, rows);
  kc::vp_backward(act(op, probs), iptr(targets), v0, rows, probs.numel() / rows,
                    static_cast<float>(scale), probs.raw(), ex.stream);
}

// ---------------------------------------------------------------- reductions

double sum_squares(const Exec& ex, const std::vector<Tensor>& xs) {
  if (xs.empty()) return 0.0;
  const Act t = act("sum_squares", xs[0]);
  std::vector<const void*> ptrs;
  std::vector<int64_t> ns;
  ptrs.reserve(xs.size());
  ns.reserve(xs.size());
  for (const Tensor& x : xs) {
    ex.check(x, "sum_squares");
    DTRAIN_CHECK(x.dtype() == xs[0].dtype(), "sum_squares: {} among {}", dtype_name(x.dtype()),
                 dtype_name(xs[0].dtype()));
    ptrs.push_back(x.raw());
    ns.push_back(x.numel());
  }
  const int64_t count = static_cast<int64_t>(xs.size());
  DTRAIN_CHECK(ex.cuda != nullptr, "sum_squares: a cuda Exec without its Context");
  const size_t need_bytes = kc::sum_squares_scratch(count) * sizeof(double);
  DTRAIN_CHECK(ex.cuda->workspace_bytes() >= need_bytes,
               "sum_squares: {} tensors need {} bytes of workspace, the context has {}", count,
               need_bytes, ex.cuda->workspace_bytes());
  return kc::sum_squares(t, ptrs.data(), ns.data(), count,
                           static_cast<double*>(ex.cuda->workspace()), ex.stream);
}

// ---------------------------------------------------------------- optimizers

namespace {

std::vector<kc::OptSpan> opt_spans(const Exec& ex, const char* op,
                                     const std::vector<UpdateSpan>& spans, bool adam) {
  std::vector<kc::OptSpan> out;
  out.reserve(spans.size());
  for (const UpdateSpan& s : spans) {
    on_device(ex, op, {s.w, s.g, s.s1, s.s2, s.wc});
    const int64_t n = s.w.numel();
    if (s.w.dtype() != DType::f32)
      throw InternalError(fmt::format("{}: no {} master weights on cuda (f32 only)", op,
                                      dtype_name(s.w.dtype())));
    need(op, "gradient", s.g, DType::f32, n);
    need(op, "state", s.s1, DType::f32, n);
    if (adam) need(op, "second moment", s.s2, DType::f32, n);
    DTRAIN_CHECK(s.g.numel() == n && s.s1.numel() == n && (!s.s2.defined() || s.s2.numel() == n) &&
                     (!s.wc.defined() || s.wc.numel() == n),
                 "{}: span tensors of different lengths", op);
    kc::OptSpan o;
    o.w = static_cast<float*>(s.w.raw());
    o.g = static_cast<const float*>(s.g.raw());
    o.s1 = static_cast<float*>(s.s1.raw());
    o.s2 = adam ? static_cast<float*>(s.s2.raw()) : nullptr;
    // As the CPU: only a bf16 compute copy is written (an f32 one aliases w).
    o.wc = s.wc.defined() && s.wc.dtype() == DType::bf16 ? static_cast<bf16*>(s.wc.raw()) : nullptr;
    o.n = n;
    o.decay = s.decay;
    if (n > 0) out.push_back(o);
  }
  return out;
}

}  // namespace

void adamw_update(const Exec& ex, const math::AdamWCoeffs<float>& on,
                  const math::AdamWCoeffs<float>& off, const std::vector<UpdateSpan>& spans) {
  const std::vector<kc::OptSpan> s = opt_spans(ex, "adamw", spans, true);
  kc::adamw_update(on, off, s.data(), static_cast<int64_t>(s.size()), ex.stream);
}

void sgd_update(const Exec& ex, const math::SgdCoeffs<float>& on, const math::SgdCoeffs<float>& off,
                const std::vector<UpdateSpan>& spans) {
  const std::vector<kc::OptSpan> s = opt_spans(ex, "sgd", spans, false);
  kc::sgd_update(on, off, s.data(), static_cast<int64_t>(s.size()), ex.stream);
}

}  // namespace dtrain::ops::cuda_ops
