// Every matrix product on the GPU goes through cuBLASLt, planned once: an
// LtMatmul is made in a layer's plan() (through ops::MatmulPlan, or the
// attention's plan) and holds the matmul descriptor, the three matrix
// layouts and the algorithm cuBLASLt's heuristic picked for the plan's
// largest product, on the context's 32 MiB workspace. run() enqueues
// cublasLtMatmul on the stream with the cached descriptors; it allocates no
// device memory.
//
// Smaller products than the planned one (a last micro-batch, an evaluation
// batch) and operands less aligned than cudaMalloc's 256 bytes (views into the
// flat parameter store) get their own entry in a small per-plan cache: its
// layouts are made for that exact shape and its algorithm is picked by the
// heuristic for that shape and alignment, at the first run that needs it (host
// work only, no device memory). An algorithm picked for the largest shape is
// not guaranteed to be valid for another one, and re-querying per call would
// cost tens of microseconds each; a cache keyed by (shape, alignment) gives
// every shape a valid algorithm, the same one in every step, hence the same
// bits run to run.
//
// A plan may fuse an epilogue (gemm_spec.h: bias, GELU keeping its input as
// aux, GELU's derivative from aux): the epilogue is fixed in the plan's
// descriptors, the bias and aux pointers are given to each run (their
// alignment is part of the per-shape cache key, as the operands').
//
// No CUDA header here: descriptors are opaque pointers, cast back inside
// matmul.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/gemm_spec.h"

namespace dtrain::cuda {

class Context;

// The operand types of a product: inputs -> output (and accumulation).
enum class LtTypes {
  f32,       // f32 x f32 -> f32, CUBLAS_COMPUTE_32F (or _FAST_TF32 when the context allows TF32)
  f64,       // f64 x f64 -> f64, CUBLAS_COMPUTE_64F
  bf16,      // bf16 x bf16 -> bf16, fp32 accumulation (CUBLAS_COMPUTE_32F)
  bf16_f32,  // bf16 x bf16 -> f32, fp32 accumulation: weight gradients accumulated (beta = 1) into fp32
};
const char* lt_types_name(LtTypes t);
// The compute type's name as cuBLAS spells it ("CUBLAS_COMPUTE_32F", ...).
const char* lt_compute_name(LtTypes t, bool tf32);
// The epilogue's name as cuBLASLt spells it ("CUBLASLT_EPILOGUE_GELU_AUX_BIAS", ...).
const char* lt_epilogue_name(LtEpilogue e);
// Bytes of one input element and of one output element.
int lt_in_bytes(LtTypes t);
int lt_out_bytes(LtTypes t);

// The host-side descriptors of one product: matmul descriptor (compute and
// scale type, transposes, epilogue with its bias/aux data types and the aux
// leading dimension) and the layouts of the first and second operand and of
// C (= D). Made without a GPU (descriptors are host objects); throws
// RuntimeError naming the call and cuBLASLt's status, InternalError for an
// epilogue the product cannot take (lt_epilogue_spec).
class LtDescriptors {
 public:
  LtDescriptors(const LtGemmSpec& s, LtTypes t, bool tf32, LtEpilogue e = LtEpilogue::none,
                const LtEpilogueSpec& es = {});
  ~LtDescriptors();
  LtDescriptors(const LtDescriptors&) = delete;
  LtDescriptors& operator=(const LtDescriptors&) = delete;

  void* op() const { return op_; }  // cublasLtMatmulDesc_t
  void* a() const { return a_; }    // cublasLtMatrixLayout_t
  void* b() const { return b_; }
  void* c() const { return c_; }

  // Read back from the matmul descriptor (what cuBLASLt will run with): the
  // epilogue's name, the aux leading dimension, the bias and aux data types
  // (cudaDataType values; -1 when unset).
  std::string epilogue_attr() const;
  int64_t aux_ld_attr() const;
  int32_t bias_type_attr() const;
  int32_t aux_type_attr() const;
  // Sets the bias and aux pointers (either may be null) for the next run.
  void set_pointers(const void* bias, const void* aux) const;

 private:
  void release() noexcept;
  void* op_ = nullptr;
  void* a_ = nullptr;
  void* b_ = nullptr;
  void* c_ = nullptr;
};

// The largest power of two (up to 256) dividing every address: what the
// heuristic is told about the operands' alignment.
int lt_alignment(const void* a, const void* b, const void* c);

class LtMatmul {
 public:
  // Plans row-major products of at most `max`'s sizes (same transposes,
  // leading dimensions and batch strides) with types `t` and epilogue `e` on
  // ctx's cuBLASLt handle and workspace; picks the algorithm for `max` (needs
  // the GPU). Throws RuntimeError when cuBLASLt has no algorithm for it.
  LtMatmul(Context& ctx, const RowGemm& max, LtTypes t, LtEpilogue e = LtEpilogue::none);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // C = alpha op(A) op(B) + beta C on `stream` for g (sizes <= the planned
  // ones; same transposes). a, b, c: device pointers of the row-major operands.
  // bias (n elements, the output's type) and aux (row-major (m, n) with C's
  // row stride, the output's type): device pointers the plan's epilogue needs.
  void run(const RowGemm& g, const void* a, const void* b, void* c, double alpha, double beta,
           void* stream, const void* bias = nullptr, const void* aux = nullptr) const;

  LtTypes types() const { return types_; }
  LtEpilogue epilogue() const { return epilogue_; }
  bool tf32() const { return tf32_; }
  // Entries in the per-shape cache (1 after planning).
  size_t cached() const { return cache_.size(); }

 private:
  struct Entry;
  const Entry& entry(const RowGemm& g, int align, const void* bias, const void* aux) const;

  Context* ctx_;
  RowGemm max_;
  LtTypes types_;
  LtEpilogue epilogue_;
  bool tf32_;
  mutable std::vector<std::unique_ptr<Entry>> cache_;
};

}  // namespace dtrain::cuda
