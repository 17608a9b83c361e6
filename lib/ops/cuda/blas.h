// The CUDA side of the ops layer's matrix products and attention (cuBLASLt
// plans of kernels/cuda/matmul.h, attention kernels of kernels/cuda/attention.h).
// Built with the backend only; reached from lib/ops/ops.cpp on a CUDA Exec.
#pragma once

#include <memory>
#include <string>

#include "core/exec.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace dtrain::cuda {
class LtMatmul;
}

namespace dtrain::ops::cuda_ops {

// The cuBLASLt plan of a MatmulPlan (descriptors, algorithm for `max`), with
// the epilogue fused (Epilogue::none: a plain product).
std::shared_ptr<cuda::LtMatmul> plan_matmul(const Exec& ex, const Gemm& max, DType ab, DType c, Epilogue e);
// bias, aux: the fused epilogue's operands (undefined when the plan has none).
void matmul(const Exec& ex, const cuda::LtMatmul& lt, const Gemm& g, const Tensor& a, const Tensor& b,
            const Tensor& c, double alpha, double beta, const Tensor& bias, const Tensor& aux);
// "cuBLASLt bf16 (fp32 accumulate)", "cuBLASLt fp32 (no TF32)", ...
std::string matmul_path(const Exec& ex, DType act);

// Attention: the three cuBLASLt plans of the batched per-head products and the
// chunking of the fp32 score matrices.
struct AttentionGpu;
std::shared_ptr<AttentionGpu> plan_attention(const Exec& ex, const Shape& qkv, Heads heads, DType act);
int64_t attention_scratch(const Shape& qkv, Heads heads, DType act);
void attention_forward(const Exec& ex, const AttentionGpu& plan, const Tensor& qkv, Heads heads,
                       const Tensor& att, const Tensor& y, const Tensor& scratch);
void attention_backward(const Exec& ex, const AttentionGpu& plan, const Tensor& dy, const Tensor& qkv,
                        const Tensor& att, Heads heads, const Tensor& scratch, const Tensor& dqkv);

}  // namespace dtrain::ops::cuda_ops
