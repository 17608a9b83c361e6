// Row-major products onto column-major cuBLASLt: a pure function, no CUDA
// header, so that the index mapping is unit-tested in CI (tests/cuda_host)
// without a GPU.
//
// dtrain's products (ops::Gemm) are row-major: C (m, n) = op(A) op(B), A
// stored (m, k) or (k, m) when trans_a, B stored (k, n) or (n, k) when
// trans_b, each with a leading dimension (the row stride). cuBLASLt is
// column-major. A row-major (r, c) matrix with row stride ld is the same
// memory as a column-major (c, r) matrix with leading dimension ld, i.e. its
// transpose. So C^T = op(B)^T op(A)^T is computed: cuBLASLt's first operand is
// dtrain's B, its second dtrain's A (the pointers swap), its (m, n) are
// dtrain's (n, m), and each operand keeps its transpose flag:
//   first operand  = B's buffer, transa = trans_b, ld = ldb
//   second operand = A's buffer, transb = trans_a, ld = lda
//   D (col-major n x m, ld = ldc) is C (row-major m x n).
// Batches (the attention's heads) carry one element stride per operand.
#pragma once

#include <cstdint>

namespace dtrain::cuda {

// A row-major product as dtrain states it (ops::Gemm plus leading
// dimensions and an optional batch of equally strided products).
struct RowGemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;  // row strides of A, B, C as stored
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch members
};

// One column-major matrix as cuBLASLt's layout descriptor takes it.
struct LtLayout {
  int64_t rows = 0, cols = 0, ld = 0;
  int64_t batch = 1, stride = 0;
};

// The column-major product cuBLASLt runs: D (m, n) = op(first) (m, k) op(second) (k, n).
struct LtGemmSpec {
  bool transa = false, transb = false;  // on the first and second operand
  int64_t m = 0, n = 0, k = 0;
  LtLayout a, b, c;   // first operand, second operand, C/D
  bool swap = true;   // first operand = dtrain's B, second = dtrain's A (always, see above)
};

// The mapping above; the default leading dimensions of contiguous operands
// come from contiguous_row_gemm.
constexpr LtGemmSpec lt_spec(const RowGemm& g) {
  LtGemmSpec s;
  s.swap = true;
  s.transa = g.trans_b;
  s.transb = g.trans_a;
  s.m = g.n;
  s.n = g.m;
  s.k = g.k;
  // first operand op(.) is (n, k): stored (n, k) col-major = B (k, n) row-major, or (k, n) when transposed
  s.a = LtLayout{g.trans_b ? g.k : g.n, g.trans_b ? g.n : g.k, g.ldb, g.batch, g.stride_b};
  // second operand op(.) is (k, m): stored (k, m) col-major = A (m, k) row-major, or (m, k) when transposed
  s.b = LtLayout{g.trans_a ? g.m : g.k, g.trans_a ? g.k : g.m, g.lda, g.batch, g.stride_a};
  s.c = LtLayout{g.n, g.m, g.ldc, g.batch, g.stride_c};
  return s;
}

// A product of contiguous row-major operands (what ops::Gemm describes): the
// leading dimensions are the stored rows' lengths.
constexpr RowGemm contiguous_row_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k) {
  RowGemm g;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = m;
  g.n = n;
  g.k = k;
  g.lda = trans_a ? m : k;
  g.ldb = trans_b ? k : n;
  g.ldc = n;
  return g;
}

// cuBLASLt epilogues dtrain fuses into a product (no CUDA header: the
// descriptor attributes are set in matmul.cpp). In dtrain's row-major terms,
// for C (m, n) = op(A) op(B):
//   bias:          C = op(A) op(B) + bias, bias (n) broadcast over C's rows
//                  (CUBLASLT_EPILOGUE_BIAS: cuBLASLt's D has n rows, the bias
//                  vector one element per row of D)
//   gelu_aux:      aux = op(A) op(B); C = gelu(aux)         (CUBLASLT_EPILOGUE_GELU_AUX)
//   gelu_aux_bias: aux = op(A) op(B) + bias; C = gelu(aux)  (CUBLASLT_EPILOGUE_GELU_AUX_BIAS)
//   dgelu:         C = (op(A) op(B)) * gelu'(aux)           (CUBLASLT_EPILOGUE_DGELU)
//   bgradb:        C = alpha op(A) op(B) + beta C; bias (m) = the sum over k
//                  of op(A)'s rows, written (not accumulated), in C's type
//                  (CUBLASLT_EPILOGUE_BGRADB: dtrain's A is cuBLASLt's second
//                  operand, B, and its m cuBLASLt's n, D's columns, the
//                  length the header gives BGRADB's vector). A weight
//                  gradient dW (out, in) += dy^T x gets the bias gradient,
//                  the column sums of dy (rows, out), from the same read of dy.
// aux is a row-major (m, n) matrix with C's row stride: cuBLASLt's
// column-major (n, m) with leading dimension ldc.
enum class LtEpilogue : uint8_t { none, bias, gelu_aux, gelu_aux_bias, dgelu, bgradb };

// The epilogues that take the bias pointer (bgradb: as its output).
constexpr bool lt_epilogue_has_bias(LtEpilogue e) {
  return e == LtEpilogue::bias || e == LtEpilogue::gelu_aux_bias || e == LtEpilogue::bgradb;
}
constexpr bool lt_epilogue_has_aux(LtEpilogue e) {
  return e == LtEpilogue::gelu_aux || e == LtEpilogue::gelu_aux_bias || e == LtEpilogue::dgelu;
}

// What an epilogue needs of a product: the bias vector's length and the aux
// matrix's leading dimension (elements), and whether cuBLASLt takes it: one
// product (no batch), and for aux a leading dimension divisible by 8 and no
// less than D's rows (cuBLASLt's rule for CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD).
// bgradb only on a weight gradient's layout (trans_a, not trans_b: cuBLASLt's
// transa N, transb T), the one Apex's fused dense, Transformer Engine and
// llm.c run BGRADB in.
struct LtEpilogueSpec {
  int64_t bias_len = 0;  // 0: no bias
  int64_t aux_ld = 0;    // 0: no aux
  bool ok = true;
};

constexpr LtEpilogueSpec lt_epilogue_spec(const RowGemm& g, LtEpilogue e) {
  LtEpilogueSpec s;
  if (e == LtEpilogue::none) return s;
  s.ok = g.batch == 1;
  if (e == LtEpilogue::bgradb) {
    s.bias_len = g.m;
    s.ok = s.ok && g.trans_a && !g.trans_b;
    return s;
  }
  if (lt_epilogue_has_bias(e)) s.bias_len = g.n;
  if (lt_epilogue_has_aux(e)) {
    s.aux_ld = g.ldc;
    s.ok = s.ok && g.ldc % 8 == 0 && g.ldc >= g.n;
  }
  return s;
}

// cuBLASLt's validity rule for a column-major layout: ld >= rows, sizes > 0.
constexpr bool lt_layout_valid(const LtLayout& l) {
  return l.rows > 0 && l.cols > 0 && l.ld >= l.rows && l.batch >= 1;
}

}  // namespace dtrain::cuda
