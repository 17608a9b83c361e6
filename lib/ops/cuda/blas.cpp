// The CUDA side of matrix products and attention: dtype mapping onto
// cuBLASLt plans, and the materialised attention as batched cuBLASLt products
// around the own kernels of kernels/cuda/attention.cu.
//
// Attention (the same semantics as kernels/cpu/attention.cpp):
//   forward:  Q, K, V = heads of qkv; for each chunk of G heads S = scale Q K^T
//             (fp32), att = causal softmax(S) (activation dtype, zero above the
//             diagonal); O = att V; y = rows of O.
//   backward: dO = heads of dy; dV = att^T dO; per chunk dP = dO V^T (fp32),
//             att = att * (dP - rowsum(att * dP)) (dS, zero above the diagonal);
//             dQ = scale dS K; dK = scale dS^T Q; dqkv = rows of dQ, dK, dV.
// Grouped-query attention (Heads::kv < q): K and V are copied head-major once
// per query head of their group, so the forward's products and dQ run over
// B*nh heads as above; dK and dV run per key/value head (B*nkv products over
// the group's stacked query heads: inner dimension group T), so each group's
// sum is the product's fp32 accumulation, rounded once. No atomics: the same
// bits every run.
// Under bf16, Q, K, V, O, the probabilities and dS are bf16, S and dP fp32, and
// every product accumulates in fp32, as on the CPU.
#include "ops/cuda/blas.h"

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_layout.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/matmul.h"

namespace dtrain::ops::cuda_ops {
namespace {

cuda::LtTypes lt_types(DType ab, DType c, const char* op) {
  if (ab == DType::f32 && c == DType::f32) return cuda::LtTypes::f32;
  if (ab == DType::f64 && c == DType::f64) return cuda::LtTypes::f64;
  if (ab == DType::bf16 && c == DType::bf16) return cuda::LtTypes::bf16;
  if (ab == DType::bf16 && c == DType::f32) return cuda::LtTypes::bf16_f32;
  throw InternalError(fmt::format("{}: no {} x {} -> {} product on cuda", op, dtype_name(ab), dtype_name(ab),
                                  dtype_name(c)));
}

// A device tensor's elements (Tensor::data is host access only).
template <class F>
F* dev(const Tensor& t) {
  return static_cast<F*>(t.raw());
}

cuda::Context& context(const Exec& ex, const char* op) {
  if (!ex.cuda) throw InternalError(fmt::format("{}: {} without a CUDA context", op, ex.device.str()));
  return *ex.cuda;
}

// A batch of contiguous row-major per-head products.
cuda::RowGemm batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t batch) {
  cuda::RowGemm g = cuda::contiguous_row_gemm(ta, tb, m, n, k);
  g.batch = batch;
  g.stride_a = m * k;
  g.stride_b = k * n;
  g.stride_c = m * n;
  return g;
}

}  // namespace

namespace {

cuda::LtEpilogue lt_epilogue(Epilogue e) {
  switch (e) {
    case Epilogue::none: return cuda::LtEpilogue::none;
    case Epilogue::bias: return cuda::LtEpilogue::bias;
    case Epilogue::gelu: return cuda::LtEpilogue::gelu_aux;
    case Epilogue::bias_gelu: return cuda::LtEpilogue::gelu_aux_bias;
    case Epilogue::dgelu: return cuda::LtEpilogue::dgelu;
    case Epilogue::bias_grad: return cuda::LtEpilogue::bgradb;
  }
  return cuda::LtEpilogue::none;
}

}  // namespace

std::shared_ptr<cuda::LtMatmul> plan_matmul(const Exec& ex, const Gemm& max, DType ab, DType c, Epilogue e) {
  const cuda::RowGemm g = cuda::contiguous_row_gemm(max.trans_a, max.trans_b, max.m, max.n, max.k);
  return std::make_shared<cuda::LtMatmul>(context(ex, "matmul"), g, lt_types(ab, c, "matmul"), lt_epilogue(e));
}

void matmul(const Exec& ex, const cuda::LtMatmul& lt, const Gemm& g, const Tensor& a, const Tensor& b,
            const Tensor& c, double alpha, double beta, const Tensor& bias, const Tensor& aux) {
  for (const Tensor* t : {&a, &b, &c, &bias, &aux}) ex.check(*t, "matmul");
  const int in = cuda::lt_in_bytes(lt.types()), out = cuda::lt_out_bytes(lt.types());
  if (static_cast<int>(dtype_size(a.dtype())) != in || a.dtype() != b.dtype() ||
      static_cast<int>(dtype_size(c.dtype())) != out)
    throw InternalError(fmt::format("matmul: {} x {} -> {} operands for a {} plan", dtype_name(a.dtype()),
                                    dtype_name(b.dtype()), dtype_name(c.dtype()), cuda::lt_types_name(lt.types())));
  lt.run(cuda::contiguous_row_gemm(g.trans_a, g.trans_b, g.m, g.n, g.k), a.raw(), b.raw(), c.raw(), alpha, beta,
         ex.stream, bias.defined() ? bias.raw() : nullptr, aux.defined() ? aux.raw() : nullptr);
}

std::string matmul_path(const Exec& ex, DType act) {
  const bool tf32 = ex.cuda && ex.cuda->tf32();
  switch (act) {
    case DType::bf16: return "cuBLASLt bf16 (fp32 accumulate)";
    case DType::f64: return "cuBLASLt fp64";
    default: return tf32 ? "cuBLASLt fp32 (TF32)" : "cuBLASLt fp32 (no TF32)";
  }
}

// ---------------------------------------------------------------- attention

struct AttentionGpu {
  DType act = DType::f32;
  int64_t B = 0, T = 0, C = 0, nh = 0, nkv = 0;  // the planned maxima (C: the queries' width)
  cuda::AttnLayout layout;
  // S = Q K^T and dP = dO V^T: (T, hs) x (T, hs)^T -> (T, T) fp32, G heads per call.
  std::unique_ptr<cuda::LtMatmul> scores;
  // O = P V and dQ = dS K: (T, T) x (T, hs) -> (T, hs), every head in one call.
  std::unique_ptr<cuda::LtMatmul> pv;
  // dV = P^T dO and dK = dS^T Q: (T, T)^T x (T, hs) -> (T, hs).
  std::unique_ptr<cuda::LtMatmul> ptv;
};

namespace {

void check_attention_dtype(DType act, const char* op) {
  if (act != DType::f32 && act != DType::bf16)
    throw InternalError(fmt::format("{}: no {} kernel on cuda (f32 and bf16 only)", op, dtype_name(act)));
}

// C: the queries' width nh hs; ld: a qkv row's, (nh + 2 nkv) hs; group: nh / nkv.
struct Dims {
  int64_t B, T, C, nh, nkv, hs, ld, group;
};

Dims dims_of(const Shape& qkv, Heads heads, const char* op) {
  DTRAIN_CHECK(qkv.rank() == 3 && heads.fits(qkv[2]), "{}: qkv {} with {}", op, qkv.str(), heads.str());
  const int64_t hs = qkv[2] / heads.row_heads();
  return {qkv[0], qkv[1], heads.q * hs, heads.q, heads.kv, hs, qkv[2], heads.group()};
}

}  // namespace

int64_t attention_scratch(const Shape& qkv, Heads heads, DType act) {
  const Dims d = dims_of(qkv, heads, "attention");
  const cuda::AttnLayout l = cuda::attn_layout(d.B, d.T, d.C, d.nh, static_cast<int>(dtype_size(act)));
  const size_t unit = dtype_size(compute_dtype(act));
  return static_cast<int64_t>((l.bytes + unit - 1) / unit);
}

std::shared_ptr<AttentionGpu> plan_attention(const Exec& ex, const Shape& qkv, Heads heads, DType act) {
  check_attention_dtype(act, "attention");
  const Dims d = dims_of(qkv, heads, "attention");
  cuda::Context& ctx = context(ex, "attention");
  auto p = std::make_shared<AttentionGpu>();
  p->act = act;
  p->B = d.B;
  p->T = d.T;
  p->C = d.C;
  p->nh = d.nh;
  p->nkv = d.nkv;
  p->layout = cuda::attn_layout(d.B, d.T, d.C, d.nh, static_cast<int>(dtype_size(act)));
  const int64_t bh = d.B * d.nh;
  p->scores = std::make_unique<cuda::LtMatmul>(ctx, batched(false, true, d.T, d.T, d.hs, p->layout.chunk),
                                               lt_types(act, DType::f32, "attention"));
  p->pv = std::make_unique<cuda::LtMatmul>(ctx, batched(false, false, d.T, d.hs, d.T, bh),
                                           lt_types(act, act, "attention"));
  // P^T dO and dS^T Q per key/value head: a group's query heads are consecutive, so the group's
  // (group T, T) matrices and (group T, hs) rows are one operand each (see backward_impl).
  p->ptv = std::make_unique<cuda::LtMatmul>(ctx, batched(true, false, d.T, d.hs, d.group * d.T, d.B * d.nkv),
                                            lt_types(act, act, "attention"));
  return p;
}

namespace {

template <class F>
struct Regions {
  F *q, *k, *v, *o, *dq, *dk, *dv;
  float* s;
  int64_t chunk;  // G: heads per score chunk
};

template <class F>
Regions<F> regions(const AttentionGpu& p, const Tensor& scratch, const Dims& d, const char* op) {
  // Offsets for this call's sizes (at most the planned ones, so within the scratch).
  // G stays the planned chunk (its (G, T, T) scores fit for any T up to the planned one).
  const cuda::AttnLayout l = cuda::attn_layout(d.B, d.T, d.C, d.nh, static_cast<int>(sizeof(F)),
                                               p.layout.chunk * d.T * d.T * 4);
  DTRAIN_CHECK(d.B <= p.B && d.T <= p.T && d.C == p.C && d.nh == p.nh && d.nkv == p.nkv,
               "{}: qkv (B {}, T {}, C {}, {}/{} heads) beyond the planned (B {}, T {}, C {}, {}/{} heads)", op, d.B,
               d.T, d.C, d.nh, d.nkv, p.B, p.T, p.C, p.nh, p.nkv);
  DTRAIN_CHECK(scratch.bytes() >= l.bytes, "{}: scratch of {} bytes, {} needed", op, scratch.bytes(), l.bytes);
  auto* base = static_cast<char*>(scratch.raw());
  return {reinterpret_cast<F*>(base + l.q),  reinterpret_cast<F*>(base + l.k),  reinterpret_cast<F*>(base + l.v),
          reinterpret_cast<F*>(base + l.o),  reinterpret_cast<F*>(base + l.dq), reinterpret_cast<F*>(base + l.dk),
          reinterpret_cast<F*>(base + l.dv), reinterpret_cast<float*>(base + l.scores), l.chunk};
}

template <class F>
void forward_impl(const Exec& ex, const AttentionGpu& p, const Dims& d, const F* qkv, F* att, F* y,
                  const Tensor& scratch) {
  const Regions<F> r = regions<F>(p, scratch, d, "attention");
  void* st = ex.stream;
  const int64_t bh = d.B * d.nh, hs = d.hs, T = d.T, ld = d.ld, ckv = d.nkv * hs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  // Under GQA each key/value head is copied for each query head of its group.
  cuda::attn_heads_from_rows<F>(qkv, ld, d.B, T, d.nh, hs, 1, r.q, st);
  cuda::attn_heads_from_rows<F>(qkv + d.C, ld, d.B, T, d.nh, hs, d.group, r.k, st);
  if (y) cuda::attn_heads_from_rows<F>(qkv + d.C + ckv, ld, d.B, T, d.nh, hs, d.group, r.v, st);
  const int64_t G = r.chunk;
  for (int64_t g0 = 0; g0 < bh; g0 += G) {
    const int64_t n = std::min(G, bh - g0);
    p.scores->run(batched(false, true, T, T, hs, n), r.q + g0 * T * hs, r.k + g0 * T * hs, r.s, scale, 0.0, st);
    cuda::attn_softmax_forward<F>(r.s, n * T, T, att + g0 * T * T, st);
  }
  if (!y) return;
  p.pv->run(batched(false, false, T, hs, T, bh), att, r.v, r.o, 1.0, 0.0, st);
  cuda::attn_heads_to_rows<F>(r.o, d.B, T, d.nh, hs, y, d.C, st);
}

template <class F>
void backward_impl(const Exec& ex, const AttentionGpu& p, const Dims& d, const F* dy, const F* qkv, F* att,
                   F* dqkv, const Tensor& scratch) {
  const Regions<F> r = regions<F>(p, scratch, d, "attention_backward");
  void* st = ex.stream;
  const int64_t bh = d.B * d.nh, hs = d.hs, T = d.T, ld = d.ld, ckv = d.nkv * hs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  cuda::attn_heads_from_rows<F>(qkv, ld, d.B, T, d.nh, hs, 1, r.q, st);
  cuda::attn_heads_from_rows<F>(qkv + d.C, ld, d.B, T, d.nh, hs, d.group, r.k, st);
  cuda::attn_heads_from_rows<F>(qkv + d.C + ckv, ld, d.B, T, d.nh, hs, d.group, r.v, st);
  F* dO = r.o;
  cuda::attn_heads_from_rows<F>(dy, d.C, d.B, T, d.nh, hs, 1, dO, st);
  // dV = P^T dO and dK = dS^T Q per key/value head. Under GQA a key/value head's gradient is the
  // sum over its group's query heads; those heads are consecutive in att and in the head-major
  // copies, so the group's (group T, T) matrices and (group T, hs) rows are single operands and
  // one product over group T sums the group in its fp32 accumulator, rounded once as on the CPU.
  const cuda::RowGemm per_kv = batched(true, false, T, hs, d.group * T, d.B * d.nkv);
  p.ptv->run(per_kv, att, dO, r.dv, 1.0, 0.0, st);  // before att is overwritten with dS
  const int64_t G = r.chunk;
  for (int64_t g0 = 0; g0 < bh; g0 += G) {
    const int64_t n = std::min(G, bh - g0);
    p.scores->run(batched(false, true, T, T, hs, n), dO + g0 * T * hs, r.v + g0 * T * hs, r.s, 1.0, 0.0, st);
    cuda::attn_softmax_backward<F>(att + g0 * T * T, r.s, n * T, T, st);
  }
  p.pv->run(batched(false, false, T, hs, T, bh), att, r.k, r.dq, scale, 0.0, st);
  p.ptv->run(per_kv, att, r.q, r.dk, scale, 0.0, st);
  cuda::attn_heads_to_rows<F>(r.dq, d.B, T, d.nh, hs, dqkv, ld, st);
  cuda::attn_heads_to_rows<F>(r.dk, d.B, T, d.nkv, hs, dqkv + d.C, ld, st);
  cuda::attn_heads_to_rows<F>(r.dv, d.B, T, d.nkv, hs, dqkv + d.C + ckv, ld, st);
}

}  // namespace

void attention_forward(const Exec& ex, const AttentionGpu& p, const Tensor& qkv, Heads heads,
                       const Tensor& att, const Tensor& y, const Tensor& scratch) {
  for (const Tensor* t : {&qkv, &att, &y, &scratch}) ex.check(*t, "attention");
  check_attention_dtype(qkv.dtype(), "attention");
  const Dims d = dims_of(qkv.shape(), heads, "attention");
  DTRAIN_CHECK(qkv.dtype() == p.act && att.dtype() == p.act && (!y.defined() || y.dtype() == p.act),
               "attention: {} tensors for a {} plan", dtype_name(qkv.dtype()), dtype_name(p.act));
  DTRAIN_CHECK(att.numel() >= d.B * d.nh * d.T * d.T &&
                   (!y.defined() || (y.numel() == d.B * d.T * d.C && y.size(-1) == d.C)),
               "attention: att {} / y {} for qkv {}", att.shape().str(), y.defined() ? y.shape().str() : "-",
               qkv.shape().str());
  if (qkv.dtype() == DType::bf16)
    forward_impl<bf16>(ex, p, d, dev<bf16>(qkv), dev<bf16>(att), y.defined() ? dev<bf16>(y) : nullptr,
                       scratch);
  else
    forward_impl<float>(ex, p, d, dev<float>(qkv), dev<float>(att), y.defined() ? dev<float>(y) : nullptr,
                        scratch);
}

void attention_backward(const Exec& ex, const AttentionGpu& p, const Tensor& dy, const Tensor& qkv,
                        const Tensor& att, Heads heads, const Tensor& scratch, const Tensor& dqkv) {
  for (const Tensor* t : {&dy, &qkv, &att, &scratch, &dqkv}) ex.check(*t, "attention_backward");
  check_attention_dtype(qkv.dtype(), "attention_backward");
  const Dims d = dims_of(qkv.shape(), heads, "attention_backward");
  DTRAIN_CHECK(qkv.dtype() == p.act && att.dtype() == p.act && dy.dtype() == p.act && dqkv.dtype() == p.act,
               "attention_backward: {} tensors for a {} plan", dtype_name(qkv.dtype()), dtype_name(p.act));
  DTRAIN_CHECK(att.numel() >= d.B * d.nh * d.T * d.T && dy.numel() == d.B * d.T * d.C && dy.size(-1) == d.C &&
                   dqkv.shape() == qkv.shape(),
               "attention_backward: att {}, dy {}, dqkv {} for qkv {}", att.shape().str(), dy.shape().str(),
               dqkv.shape().str(), qkv.shape().str());
  if (qkv.dtype() == DType::bf16)
    backward_impl<bf16>(ex, p, d, dev<bf16>(dy), dev<bf16>(qkv), dev<bf16>(att), dev<bf16>(dqkv), scratch);
  else
    backward_impl<float>(ex, p, d, dev<float>(dy), dev<float>(qkv), dev<float>(att), dev<float>(dqkv),
                         scratch);
}

}  // namespace dtrain::ops::cuda_ops
