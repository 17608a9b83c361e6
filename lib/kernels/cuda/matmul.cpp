// cuBLASLt plans (see matmul.h): descriptors from the pure row-major ->
// column-major mapping of gemm_spec.h, one heuristic query per (shape,
// alignment), cublasLtMatmul on the context's stream and workspace.
#include "kernels/cuda/matmul.h"

#include <cublasLt.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"
#include "kernels/cuda/context.h"

namespace dtrain::cuda {
namespace {

constexpr size_t kMaxEntries = 64;  // per plan

void lt_check(cublasStatus_t st, const char* call) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw RuntimeError(fmt::format("cuBLASLt: {}: {}", call, cublasLtGetStatusString(st)));
}

cudaDataType_t in_type(LtTypes t) {
  switch (t) {
    case LtTypes::f32: return CUDA_R_32F;
    case LtTypes::f64: return CUDA_R_64F;
    case LtTypes::bf16:
    case LtTypes::bf16_f32: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

cudaDataType_t out_type(LtTypes t) {
  switch (t) {
    case LtTypes::f32:
    case LtTypes::bf16_f32: return CUDA_R_32F;
    case LtTypes::f64: return CUDA_R_64F;
    case LtTypes::bf16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

cublasComputeType_t compute_type(LtTypes t, bool tf32) {
  if (t == LtTypes::f64) return CUBLAS_COMPUTE_64F;
  if (t == LtTypes::f32 && tf32) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;  // fp32 accumulation for bf16 inputs
}

cudaDataType_t scale_type(LtTypes t) { return t == LtTypes::f64 ? CUDA_R_64F : CUDA_R_32F; }

cublasLtEpilogue_t lt_epilogue(LtEpilogue e) {
  switch (e) {
    case LtEpilogue::none: return CUBLASLT_EPILOGUE_DEFAULT;
    case LtEpilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
    case LtEpilogue::gelu_aux: return CUBLASLT_EPILOGUE_GELU_AUX;
    case LtEpilogue::gelu_aux_bias: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case LtEpilogue::dgelu: return CUBLASLT_EPILOGUE_DGELU;
    case LtEpilogue::bgradb: return CUBLASLT_EPILOGUE_BGRADB;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

// What the heuristic is told about a bias or aux pointer not yet known (at
// planning): 256-byte aligned, as cudaMalloc's. Never dereferenced by it.
const void* planned_pointer() { return reinterpret_cast<const void*>(uintptr_t{256}); }

template <class V>
V desc_attr(void* op, cublasLtMatmulDescAttributes_t attr, V fallback) {
  V v = fallback;
  size_t written = 0;
  if (cublasLtMatmulDescGetAttribute(static_cast<cublasLtMatmulDesc_t>(op), attr, &v, sizeof v, &written) !=
      CUBLAS_STATUS_SUCCESS)
    return fallback;
  return v;
}

cublasLtMatrixLayout_t make_layout(const LtLayout& l, cudaDataType_t type, const char* which) {
  if (!lt_layout_valid(l))
    throw InternalError(fmt::format("cuBLASLt: layout {} of {} x {} with ld {} (batch {})", which, l.rows,
                                    l.cols, l.ld, l.batch));
  cublasLtMatrixLayout_t h = nullptr;
  lt_check(cublasLtMatrixLayoutCreate(&h, type, static_cast<uint64_t>(l.rows), static_cast<uint64_t>(l.cols),
                                      l.ld),
           "cublasLtMatrixLayoutCreate");
  if (l.batch > 1) {
    const int32_t count = static_cast<int32_t>(l.batch);
    const int64_t stride = l.stride;
    cublasStatus_t st = cublasLtMatrixLayoutSetAttribute(h, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatrixLayoutSetAttribute(h, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride);
    if (st != CUBLAS_STATUS_SUCCESS) {
      cublasLtMatrixLayoutDestroy(h);
      lt_check(st, "cublasLtMatrixLayoutSetAttribute(batch)");
    }
  }
  return h;
}

}  // namespace

const char* lt_types_name(LtTypes t) {
  switch (t) {
    case LtTypes::f32: return "f32 x f32 -> f32";
    case LtTypes::f64: return "f64 x f64 -> f64";
    case LtTypes::bf16: return "bf16 x bf16 -> bf16";
    case LtTypes::bf16_f32: return "bf16 x bf16 -> f32";
  }
  return "?";
}

const char* lt_compute_name(LtTypes t, bool tf32) {
  switch (compute_type(t, tf32)) {
    case CUBLAS_COMPUTE_64F: return "CUBLAS_COMPUTE_64F";
    case CUBLAS_COMPUTE_32F_FAST_TF32: return "CUBLAS_COMPUTE_32F_FAST_TF32";
    default: return "CUBLAS_COMPUTE_32F";
  }
}

const char* lt_epilogue_name(LtEpilogue e) {
  switch (e) {
    case LtEpilogue::none: return "CUBLASLT_EPILOGUE_DEFAULT";
    case LtEpilogue::bias: return "CUBLASLT_EPILOGUE_BIAS";
    case LtEpilogue::gelu_aux: return "CUBLASLT_EPILOGUE_GELU_AUX";
    case LtEpilogue::gelu_aux_bias: return "CUBLASLT_EPILOGUE_GELU_AUX_BIAS";
    case LtEpilogue::dgelu: return "CUBLASLT_EPILOGUE_DGELU";
    case LtEpilogue::bgradb: return "CUBLASLT_EPILOGUE_BGRADB";
  }
  return "?";
}

int lt_in_bytes(LtTypes t) { return t == LtTypes::f64 ? 8 : (t == LtTypes::f32 ? 4 : 2); }
int lt_out_bytes(LtTypes t) { return t == LtTypes::f64 ? 8 : (t == LtTypes::bf16 ? 2 : 4); }

LtDescriptors::LtDescriptors(const LtGemmSpec& s, LtTypes t, bool tf32, LtEpilogue e, const LtEpilogueSpec& es) {
  // The bias: one element per row of D; BGRADB's gradient one per column.
  const int64_t bias_len = e == LtEpilogue::bgradb ? s.n : s.m;
  if (e != LtEpilogue::none && (!es.ok || (lt_epilogue_has_bias(e) && es.bias_len != bias_len) ||
                                (lt_epilogue_has_aux(e) && es.aux_ld < s.m)))
    throw InternalError(fmt::format("cuBLASLt: {} on a product with D of {} x {} (batch {}), bias of {}, aux ld {}",
                                    lt_epilogue_name(e), s.m, s.n, s.c.batch, es.bias_len, es.aux_ld));
  try {
    cublasLtMatmulDesc_t op = nullptr;
    lt_check(cublasLtMatmulDescCreate(&op, compute_type(t, tf32), scale_type(t)), "cublasLtMatmulDescCreate");
    op_ = op;
    const cublasOperation_t ta = s.transa ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = s.transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasLtEpilogue_t ep = lt_epilogue(e);
    lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "set TRANSA");
    lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "set TRANSB");
    lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep), "set EPILOGUE");
    // Bias and aux in the output's type (the activation dtype: the Linear's
    // compute copy of its bias, the MLP's pre-GELU buffer; BGRADB's gradient
    // in the weight gradient's, fp32 under bf16).
    const int32_t ot = static_cast<int32_t>(out_type(t));
    if (lt_epilogue_has_bias(e))
      lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &ot, sizeof ot),
               "set BIAS_DATA_TYPE");
    if (lt_epilogue_has_aux(e)) {
      const int64_t ld = es.aux_ld;
      lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld),
               "set EPILOGUE_AUX_LD");
      lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &ot, sizeof ot),
               "set EPILOGUE_AUX_DATA_TYPE");
    }
    set_pointers(lt_epilogue_has_bias(e) ? planned_pointer() : nullptr,
                 lt_epilogue_has_aux(e) ? planned_pointer() : nullptr);
    a_ = make_layout(s.a, in_type(t), "A");
    b_ = make_layout(s.b, in_type(t), "B");
    c_ = make_layout(s.c, out_type(t), "C");
  } catch (...) {
    release();
    throw;
  }
}

LtDescriptors::~LtDescriptors() { release(); }

std::string LtDescriptors::epilogue_attr() const {
  const auto e = desc_attr<uint32_t>(op_, CUBLASLT_MATMUL_DESC_EPILOGUE, 0);
  for (LtEpilogue x : {LtEpilogue::none, LtEpilogue::bias, LtEpilogue::gelu_aux, LtEpilogue::gelu_aux_bias,
                       LtEpilogue::dgelu, LtEpilogue::bgradb})
    if (static_cast<uint32_t>(lt_epilogue(x)) == e) return lt_epilogue_name(x);
  return fmt::format("epilogue {}", e);
}

int64_t LtDescriptors::aux_ld_attr() const { return desc_attr<int64_t>(op_, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, -1); }

int32_t LtDescriptors::bias_type_attr() const {
  return desc_attr<int32_t>(op_, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, -1);
}

int32_t LtDescriptors::aux_type_attr() const {
  return desc_attr<int32_t>(op_, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, -1);
}

void LtDescriptors::set_pointers(const void* bias, const void* aux) const {
  auto op = static_cast<cublasLtMatmulDesc_t>(op_);
  if (bias) lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
                     "set BIAS_POINTER");
  if (aux)
    lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux),
             "set EPILOGUE_AUX_POINTER");
}

void LtDescriptors::release() noexcept {
  if (c_) cublasLtMatrixLayoutDestroy(static_cast<cublasLtMatrixLayout_t>(c_));
  if (b_) cublasLtMatrixLayoutDestroy(static_cast<cublasLtMatrixLayout_t>(b_));
  if (a_) cublasLtMatrixLayoutDestroy(static_cast<cublasLtMatrixLayout_t>(a_));
  if (op_) cublasLtMatmulDescDestroy(static_cast<cublasLtMatmulDesc_t>(op_));
  a_ = b_ = c_ = op_ = nullptr;
}

int lt_alignment(const void* a, const void* b, const void* c) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) |
                         reinterpret_cast<uintptr_t>(c) | uintptr_t{256};
  return static_cast<int>(bits & (~bits + 1));  // lowest set bit
}

// One (shape, alignment) of a plan: its descriptors and algorithm.
struct LtMatmul::Entry {
  RowGemm g;
  int align = 256;
  LtDescriptors d;
  cublasLtMatmulAlgo_t algo{};
  Entry(const RowGemm& g_, int align_, LtTypes t, bool tf32, LtEpilogue e)
      : g(g_), align(align_), d(lt_spec(g_), t, tf32, e, lt_epilogue_spec(g_, e)) {}
};

LtMatmul::LtMatmul(Context& ctx, const RowGemm& max, LtTypes t, LtEpilogue e)
    : ctx_(&ctx), max_(max), types_(t), epilogue_(e), tf32_(t == LtTypes::f32 && ctx.tf32()) {
  entry(max, 256, planned_pointer(), planned_pointer());
}

LtMatmul::~LtMatmul() = default;

const LtMatmul::Entry& LtMatmul::entry(const RowGemm& g, int align, const void* bias, const void* aux) const {
  for (const auto& e : cache_)
    if (e->align == align && e->g.m == g.m && e->g.n == g.n && e->g.k == g.k && e->g.batch == g.batch &&
        e->g.lda == g.lda && e->g.ldb == g.ldb && e->g.ldc == g.ldc && e->g.stride_a == g.stride_a &&
        e->g.stride_b == g.stride_b && e->g.stride_c == g.stride_c)
      return *e;
  auto e = std::make_unique<Entry>(g, align, types_, tf32_, epilogue_);
  // The heuristic reads the bias and aux pointers' alignment (align covers them).
  e->d.set_pointers(lt_epilogue_has_bias(epilogue_) ? bias : nullptr, lt_epilogue_has_aux(epilogue_) ? aux : nullptr);
  cublasLtMatmulPreference_t pref = nullptr;
  lt_check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = ctx_->workspace_bytes();
  const uint32_t al = static_cast<uint32_t>(align);
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof al);
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(ctx_->cublaslt()),
                                        static_cast<cublasLtMatmulDesc_t>(e->d.op()),
                                        static_cast<cublasLtMatrixLayout_t>(e->d.a()),
                                        static_cast<cublasLtMatrixLayout_t>(e->d.b()),
                                        static_cast<cublasLtMatrixLayout_t>(e->d.c()),
                                        static_cast<cublasLtMatrixLayout_t>(e->d.c()), pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  const std::string what = fmt::format("{} x {} (m {} n {} k {}, batch {}, {}, {}, {}, {}-byte aligned)",
                                       g.trans_a ? "A^T" : "A", g.trans_b ? "B^T" : "B", g.m, g.n, g.k, g.batch,
                                       lt_types_name(types_), lt_compute_name(types_, tf32_),
                                       lt_epilogue_name(epilogue_), align);
  if (st != CUBLAS_STATUS_SUCCESS)
    throw RuntimeError(fmt::format("cuBLASLt: cublasLtMatmulAlgoGetHeuristic {}: {}", what,
                                   cublasLtGetStatusString(st)));
  if (found < 1 || res.state != CUBLAS_STATUS_SUCCESS)
    throw RuntimeError(fmt::format("cuBLASLt: no algorithm for the product {}", what));
  e->algo = res.algo;
  // Bounded for callers whose shapes keep changing (generation's growing
  // sequences): the oldest entry after the planned one goes. The heuristic
  // answers the same for the same shape, so a re-made entry has the same
  // algorithm and the results the same bits.
  if (cache_.size() >= kMaxEntries) cache_.erase(cache_.begin() + 1);
  cache_.push_back(std::move(e));
  return *cache_.back();
}

void LtMatmul::run(const RowGemm& g, const void* a, const void* b, void* c, double alpha, double beta,
                   void* stream, const void* bias, const void* aux) const {
  if (g.trans_a != max_.trans_a || g.trans_b != max_.trans_b || g.m > max_.m || g.n > max_.n || g.k > max_.k ||
      g.batch > max_.batch)
    throw InternalError(fmt::format("cuBLASLt: product (m {} n {} k {} batch {}) beyond the planned "
                                    "(m {} n {} k {} batch {}) or with other transposes",
                                    g.m, g.n, g.k, g.batch, max_.m, max_.n, max_.k, max_.batch));
  if ((lt_epilogue_has_bias(epilogue_) && !bias) || (lt_epilogue_has_aux(epilogue_) && !aux))
    throw InternalError(fmt::format("cuBLASLt: {} run without its {}", lt_epilogue_name(epilogue_),
                                    lt_epilogue_has_bias(epilogue_) && !bias ? "bias" : "aux matrix"));
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (!lt_epilogue_has_bias(epilogue_)) bias = nullptr;
  if (!lt_epilogue_has_aux(epilogue_)) aux = nullptr;
  const int align = std::min(lt_alignment(a, b, c), lt_alignment(bias ? bias : a, aux ? aux : a, a));
  const Entry& e = entry(g, align, bias, aux);
  e.d.set_pointers(bias, aux);
  // The first cuBLASLt operand is dtrain's B, the second dtrain's A (gemm_spec.h).
  const void* first = b;
  const void* second = a;
  const auto* wsp = ctx_->workspace();
  const size_t wsb = ctx_->workspace_bytes();
  auto lt = static_cast<cublasLtHandle_t>(ctx_->cublaslt());
  auto op = static_cast<cublasLtMatmulDesc_t>(e.d.op());
  auto la = static_cast<cublasLtMatrixLayout_t>(e.d.a());
  auto lb = static_cast<cublasLtMatrixLayout_t>(e.d.b());
  auto lc = static_cast<cublasLtMatrixLayout_t>(e.d.c());
  cublasStatus_t st;
  if (types_ == LtTypes::f64) {
    const double al = alpha, be = beta;
    st = cublasLtMatmul(lt, op, &al, first, la, second, lb, &be, c, lc, c, lc, &e.algo, const_cast<void*>(wsp),
                        wsb, static_cast<cudaStream_t>(stream));
  } else {
    const float al = static_cast<float>(alpha), be = static_cast<float>(beta);
    st = cublasLtMatmul(lt, op, &al, first, la, second, lb, &be, c, lc, c, lc, &e.algo, const_cast<void*>(wsp),
                        wsb, static_cast<cudaStream_t>(stream));
  }
  if (st != CUBLAS_STATUS_SUCCESS)
    throw RuntimeError(fmt::format("cuBLASLt: cublasLtMatmul (m {} n {} k {} batch {}, {}): {}", g.m, g.n, g.k,
                                   g.batch, lt_types_name(types_), cublasLtGetStatusString(st)));
}

}  // namespace dtrain::cuda
