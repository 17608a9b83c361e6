// The ops layer: one entry point per operation, between the layers (and the
// optimizers, clipping and the step loop) and the kernels of each device.
// Layers compute only through these functions; they never name a device, a
// kernel or a C++ element type. Each op takes an Exec (the device; with CUDA
// its stream and handles) and tensors, checks that the tensors live on the
// Exec's device and have the dtypes the op expects, and dispatches on
// (device, dtype) to a kernel: today the CPU's (lib/kernels/cpu), with the
// CUDA backend's beside them.
//
// Dtypes. An op's "activation" tensors (inputs, outputs and their gradients)
// share one dtype: f32, bf16 (mixed precision) or f64 (finite-difference
// checks). Parameters come as their compute copy (the activation dtype) and
// their gradients in the compute type of that dtype (f32 for bf16 and f32,
// f64 for f64): gradients accumulate in fp32 under bf16. Statistics (layer-norm
// mean and rstd, softmax maxima and sums, batch-norm moments) are kept in the
// compute type too.
//
// Stateful operations (matrix products, attention) get a plan, made once in a
// layer's plan() and run in every step: on the CPU it fixes the kernel and
// checks the shapes; on a GPU it holds the cuBLASLt descriptors and algorithms
// (kernels/cuda/matmul.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/exec.h"
#include "core/tensor.h"
#include "kernels/elementwise_math.h"

namespace dtrain::cuda {
class LtMatmul;  // kernels/cuda/matmul.h: a cuBLASLt plan
}

namespace dtrain::ops {

namespace cuda_ops {
struct AttentionGpu;  // ops/cuda/blas.cpp: the attention's cuBLASLt plans
}

// The compute-type dtype of an activation dtype: f32 for f32 and bf16, f64 for f64.
DType compute_dtype(DType act);

// ---------------------------------------------------------------- products

// C (m, n) = alpha * op(A) @ op(B) + beta * C on contiguous row-major
// operands: A is (m, k), or (k, m) when trans_a; B is (k, n), or (n, k) when trans_b.
struct Gemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
};

// What a product does after the multiplication (alpha 1, beta 0 when not none):
//   bias:          C = op(A) op(B) + bias (bias (n) added to every row)
//   gelu:          aux = op(A) op(B); C = gelu(aux)
//   bias_gelu:     aux = op(A) op(B) + bias; C = gelu(aux)
//   dgelu:         C = (op(A) op(B)) * gelu'(aux)
//   bias_grad:     C = alpha op(A) op(B) + beta C (alpha and beta as given: a
//                  weight gradient accumulates); bias (m) = the column sums
//                  of A as stored, (k, m), i.e. op(A) summed over k, written
//                  (not accumulated). Only with trans_a and not trans_b: the
//                  weight gradient dW += dy^T x, bias = dy's column sums.
// aux (m, n) and bias are in C's dtype. Every device gives the same
// result as the unfused ops (broadcast_rows then beta = 1, gelu_forward,
// gelu_backward, zero then sum_rows_acc), which the CPU runs; a GPU fuses
// them into the cuBLASLt product (CUBLASLT_EPILOGUE_BIAS / GELU_AUX(_BIAS) /
// DGELU / BGRADB) where fused_epilogue() says so, and runs the same unfused
// ops elsewhere. (bias_grad fused sums in cuBLASLt's order: the same sum,
// not necessarily the same bits as sum_rows_acc's.)
enum class Epilogue : uint8_t { none, bias, gelu, bias_gelu, dgelu, bias_grad };

// Whether a product with this epilogue and activations in `act` runs fused on
// ex's device, for C rows of n elements: never on the CPU; on a GPU the bias
// in fp32 and bf16 (the same arithmetic: one rounding of the fp32 sum plus
// bias), GELU and its derivative in bf16 only, where n is a multiple of 8
// (cuBLASLt's aux leading dimension). fp32 stays strict: cuBLASLt documents
// its GELU only as "GELU" (the tanh approximation, PyTorch's
// _addmm_activation treats it so), not the arithmetic of its tanh, so fp32
// keeps the own GELU kernels, which share the CPU's elementwise_math.h.
// The bias gradient (BGRADB) in an fp32 or bf16 output (a weight gradient's:
// fp32 under either precision), any n.
bool fused_epilogue(const Exec& ex, Epilogue e, DType act, int64_t n);

class MatmulPlan {
 public:
  MatmulPlan() = default;
  // For products of at most `max`'s sizes (same transposes), inputs in `ab`
  // and the output in `c` (f32/f32, f64/f64, bf16/bf16 or bf16 inputs into an
  // f32 output, which weight gradients use to accumulate in fp32), with
  // epilogue `e` (ab == c unless none or bias_grad). A bias_grad that
  // cuBLASLt has no algorithm for at `max` runs unfused (fused() false).
  // On a CUDA Exec: the cuBLASLt descriptors and the algorithm for `max`
  // (smaller products get theirs at their first run; see kernels/cuda/matmul.h).
  MatmulPlan(const Exec& ex, const Gemm& max, DType ab, DType c, Epilogue e = Epilogue::none);
  bool planned() const { return planned_; }
  Epilogue epilogue() const { return ep_; }
  // Whether the epilogue runs inside the product (fused_epilogue at plan time).
  bool fused() const { return fused_; }
  // bias: for bias and bias_gelu (read), bias_grad (written: m elements);
  // aux: gelu, bias_gelu (written) and dgelu (read).
  // With an epilogue other than bias_grad alpha must be 1 and beta 0.
  void run(const Exec& ex, const Gemm& g, const Tensor& a, const Tensor& b, const Tensor& c,
           double alpha, double beta, const Tensor& bias = {}, const Tensor& aux = {}) const;

 private:
  void product(const Exec& ex, const Gemm& g, const Tensor& a, const Tensor& b, const Tensor& c, double alpha,
               double beta, const Tensor& bias, const Tensor& aux) const;
  Gemm max_;
  DType ab_ = DType::f32, c_ = DType::f32;
  Epilogue ep_ = Epilogue::none;
  bool fused_ = false;
  bool planned_ = false;
  std::shared_ptr<cuda::LtMatmul> lt_;  // CUDA only, with the epilogue when fused
};

// Names the matrix-product path a run with activations in `act` uses, for the
// first log line ("dtrain-avx512 sgemm", "AMX bf16", ...). Throws ConfigError
// for an environment override the CPU cannot honour.
std::string matmul_path(const Exec& ex, DType act);

// ---------------------------------------------------------------- elementwise

void zero(const Exec& ex, const Tensor& x);
// dst = src (same numel and dtype). On a GPU either may be in host memory (an
// upload or a download), enqueued on the stream: from pinned host memory it is
// asynchronous, so the host must not touch src/dst until the stream is synced.
void copy(const Exec& ex, const Tensor& src, const Tensor& dst);
// y = a + b.
void add(const Exec& ex, const Tensor& a, const Tensor& b, const Tensor& y);
// x *= s (any floating dtype).
void scale(const Exec& ex, const Tensor& x, double s);
// x viewed as (rows, v), v its last dimension: columns [from, v) of every row
// = value (from in [0, v]; from == v: nothing). The loss's padded vocabulary:
// -inf logits before the softmax (never predicted), 0 in their gradient.
void fill_columns(const Exec& ex, const Tensor& x, int64_t from, double value);
// dst = src converted (same numel; f32 <-> bf16 rounds to nearest even, or a copy).
void convert(const Exec& ex, const Tensor& src, const Tensor& dst);
// src viewed as (a, b, n) -> dst as (b, a, n): dst[j][i] = src[i][j], rows of
// n contiguous elements (same dtype, numel a * b * n). Sequence parallelism's
// layout change between (B, T, C) and the rank-major (t, B, T/t, C) that
// all-gather and reduce-scatter use. On a GPU: a * b device copies on the stream.
void transpose_blocks(const Exec& ex, const Tensor& src, int64_t a, int64_t b, const Tensor& dst);
// y (n, m): every row = b (m).
void broadcast_rows(const Exec& ex, const Tensor& b, const Tensor& y);
// y (n, m): every row += b (m).
void add_rows(const Exec& ex, const Tensor& b, const Tensor& y);
// acc (m) += column sums of x (n, m); acc in x's compute type.
void sum_rows_acc(const Exec& ex, const Tensor& x, const Tensor& acc);

void gelu_forward(const Exec& ex, const Tensor& x, const Tensor& y);
// dx = dy * gelu'(x); dx may be dy (in place).
void gelu_backward(const Exec& ex, const Tensor& x, const Tensor& dy, const Tensor& dx);
// SwiGLU: f (n, 2h), each row the gate a then the up-projection u; g (n, h) = silu(a) * u.
void swiglu_forward(const Exec& ex, const Tensor& f, const Tensor& g);
// df (n, 2h) = dL/d(a, u) for dg (n, h) = dL/dg; df does not alias f or dg.
void swiglu_backward(const Exec& ex, const Tensor& f, const Tensor& dg, const Tensor& df);
void relu_forward(const Exec& ex, const Tensor& x, const Tensor& y);
void relu_backward(const Exec& ex, const Tensor& y, const Tensor& dy, const Tensor& dx);

// Dropout with masks from a counter-based RNG keyed by (key, sample, element):
// the same mask on every device and layout. y = resid + drop(x) when resid is defined.
// first_element: where x's samples start inside the whole samples (a sequence
// slice under sequence parallelism draws the elements one process would).
uint64_t dropout_key(uint64_t seed, int64_t step, uint64_t name_hash);
void dropout_forward(const Exec& ex, const Tensor& x, const Tensor& resid, double p, uint64_t key,
                     int64_t first_sample, const Tensor& mask, const Tensor& y,
                     int64_t first_element = 0);
void dropout_backward(const Exec& ex, const Tensor& dy, const Tensor& mask, double p, const Tensor& dx);

// ---------------------------------------------------------------- normalisation

// Scratch elements (compute type) layernorm_backward needs for width c.
int64_t layernorm_scratch(int64_t c);
// x, y (rows, c); w, b (c) (b may be undefined); mean, rstd (rows) in the compute type.
void layernorm_forward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b,
                       double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd);
// dx = dres + d(layernorm) (dres may be undefined); dw, db accumulate (+=, compute
// type); db undefined without bias. scratch: layernorm_scratch(c) elements.
void layernorm_backward(const Exec& ex, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dres,
                        const Tensor& dx, const Tensor& dw, const Tensor& db,
                        const Tensor& scratch);

// RMSNorm: as layernorm without the mean and bias; rstd (rows), compute type.
int64_t rmsnorm_scratch(int64_t c);
void rmsnorm_forward(const Exec& ex, const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd);
void rmsnorm_backward(const Exec& ex, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, const Tensor& dres, const Tensor& dx, const Tensor& dw,
                      const Tensor& scratch);

// ---------------------------------------------------------------- attention

// An attention's heads: q query heads and kv key/value heads, kv dividing q.
// kv == q is multi-head attention (GPT-2, LLaMA 1 and 2 7B); kv < q is
// grouped-query attention (GQA: LLaMA 2 70B, LLaMA 3, Mistral), each
// key/value head serving q / kv consecutive query heads; kv == 1 is
// multi-query attention. The fused qkv rows (B, T, (q + 2 kv) hs) hold the q
// query heads, then the kv key heads, then the kv value heads, each hs wide.
struct Heads {
  int64_t q = 0, kv = 0;
  constexpr Heads() = default;
  // n of each: multi-head attention (implicit, so that an int is its heads).
  constexpr Heads(int64_t n) : q(n), kv(n) {}  // NOLINT(google-explicit-constructor)
  constexpr Heads(int64_t q_heads, int64_t kv_heads) : q(q_heads), kv(kv_heads) {}
  constexpr int64_t group() const { return q / kv; }  // query heads per key/value head
  // Head widths in a qkv row, and whether `cols` columns are such a row of
  // even-width heads (`even`: rope's pairs).
  constexpr int64_t row_heads() const { return q + 2 * kv; }
  constexpr bool fits(int64_t cols, bool even = false) const {
    return q > 0 && kv > 0 && q % kv == 0 && cols % row_heads() == 0 && cols > 0 &&
           (!even || (cols / row_heads()) % 2 == 0);
  }
  std::string str() const;  // "4 heads" or "8 query heads, 2 key/value heads"
};

// Rotary position embedding, in place on qkv (B, T, (q + 2 kv) hs) with heads
// of even width: the queries and keys of row s turn by position pos0 + s's
// angles (math::Rope: the base theta, a number converting to it, and LLaMA
// 3.1's frequency scaling); inverse turns them back, which is the backward
// pass applied to dL/dqkv.
void rope(const Exec& ex, const Tensor& qkv, Heads heads, const math::Rope& rope, int64_t pos0, bool inverse);

// Scratch elements (compute type of act) attention needs for qkv of at most
// shape `qkv` with these heads: on the CPU one row block of scores per thread
// (and under GQA the fp32 sums of a key/value head's dK and dV); on a GPU the
// head-major Q, K, V, O/dO, dQ, dK, dV and a chunk of fp32 score matrices
// (kernels/cuda/attention_layout.h).
int64_t attention_scratch(const Exec& ex, const Shape& qkv, Heads heads, DType act);

// Made in the layer's plan() for qkv of at most `qkv`'s shape: on a GPU the
// cuBLASLt plans of the batched per-head products; nothing on the CPU.
class AttentionPlan {
 public:
  AttentionPlan() = default;
  AttentionPlan(const Exec& ex, const Shape& qkv, Heads heads, DType act);
  bool planned() const { return planned_; }
  const cuda_ops::AttentionGpu* gpu() const { return gpu_.get(); }

 private:
  bool planned_ = false;
  std::shared_ptr<cuda_ops::AttentionGpu> gpu_;  // CUDA only
};

// qkv (B, T, (q + 2 kv) hs) -> att (B, q, T, T) probabilities, y (B, T, q hs);
// y undefined: the probabilities only (recomputation before backward).
void attention_forward(const Exec& ex, const AttentionPlan& plan, const Tensor& qkv, Heads heads,
                       const Tensor& att, const Tensor& y, const Tensor& scratch);
// att is overwritten (it holds dL/dscores afterwards); dqkv is qkv's shape,
// its dK and dV summed over each key/value head's query heads.
void attention_backward(const Exec& ex, const AttentionPlan& plan, const Tensor& dy, const Tensor& qkv,
                        const Tensor& att, Heads heads, const Tensor& scratch, const Tensor& dqkv);

// ---------------------------------------------------------------- embeddings

// tokens (B, T) int32; wte (V, C), wpe (>= T, C); y (B, T, C).
void embedding_forward(const Exec& ex, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& y);
// Rows [v0, v0 + wte.rows) of the vocabulary only (others zero); no positions.
void token_embedding_shard_forward(const Exec& ex, const Tensor& tokens, const Tensor& wte,
                                   int64_t v0, const Tensor& y);
void position_embedding_add(const Exec& ex, const Tensor& wpe, const Tensor& y);
// dwte rows [v0, v0 + dwte.rows) and dwpe (undefined: no learned positions) accumulate dy (+=, compute type);
// deterministic (columns split among threads, tokens in order).
void embedding_backward(const Exec& ex, const Tensor& dy, const Tensor& tokens, int64_t v0,
                        const Tensor& dwte, const Tensor& dwpe);

// ---------------------------------------------------------------- losses

// Running loss statistics, kept where the loss is computed (on the device) and
// read once per step or evaluation, not per micro-batch. Each forward adds its
// micro-batch's mean loss, mean * items, items, correct argmaxes and 1 (f64).
struct LossAccum {
  Tensor sums;  // (5) f64
};
LossAccum make_loss_accum(const Exec& ex);
struct LossTotals {
  double mean_sum = 0;      // sum over micro-batches of their mean loss
  double weighted_sum = 0;  // sum over micro-batches of mean * items
  int64_t count = 0, correct = 0, batches = 0;
};
// Host copy of the statistics (the one device-to-host read), then zeroed.
LossTotals read_and_reset(const Exec& ex, LossAccum& acc);

// Softmax cross-entropy over logits (rows, V) with int32 targets (rows):
// row_max, row_sum (rows, compute type); adds the rows' losses and correct
// argmaxes into acc.
void softmax_xent_forward(const Exec& ex, const Tensor& logits, const Tensor& targets,
                          const Tensor& row_max, const Tensor& row_sum, const Tensor& row_loss,
                          const Tensor& argmax, LossAccum& acc);
// dx = scale * (softmax - onehot); dx may be logits (in place).
void softmax_xent_backward(const Exec& ex, const Tensor& logits, const Tensor& targets,
                           const Tensor& row_max, const Tensor& row_sum, double scale,
                           const Tensor& dx);

// The vocabulary-parallel cross-entropy's local pieces (Megatron): each rank
// holds columns [v0, v0 + V/t) of the logits.
// row_max (rows) = the local row maxima (all-reduced with max by the caller).
void vp_row_max(const Exec& ex, const Tensor& logits, const Tensor& row_max);
// probs = exp(x - max); sums (2, rows): [0] the local exp sums, [1] the target
// logit where this rank holds it (else 0); argmax (rows): the first column
// (global id) holding the row maximum, INT32_MAX where none here.
void vp_exp_sums(const Exec& ex, const Tensor& logits, const Tensor& targets, int64_t v0,
                 const Tensor& row_max, const Tensor& probs, const Tensor& sums,
                 const Tensor& argmax);
// After the sums and argmax are all-reduced: probs /= sum; losses and correct into acc.
void vp_finish(const Exec& ex, const Tensor& targets, const Tensor& row_max, const Tensor& sums,
               const Tensor& argmax, const Tensor& probs, const Tensor& row_loss, LossAccum& acc);
// probs -> scale * (probs - onehot) in place, for the columns this rank holds.
void vp_backward(const Exec& ex, const Tensor& targets, int64_t v0, double scale, const Tensor& probs);

// ---------------------------------------------------------------- reductions

// Sum of squares of every tensor, in double, in a fixed order (the same bits
// for any thread count).
double sum_squares(const Exec& ex, const std::vector<Tensor>& xs);

}  // namespace dtrain::ops
