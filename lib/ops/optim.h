// The optimizers' updates as ops: AdamW and SGD over spans of the flat
// parameter buffer (the part of each parameter in this rank's range). The
// per-element math is kernels/elementwise_math.h, shared with the GPU.
// Under mixed precision each span also names the parameter's bf16 compute
// copy, which the update writes in the same pass (as llm.c's AdamW kernel).
#pragma once

#include <vector>

#include "core/exec.h"
#include "core/tensor.h"

namespace dtrain::ops {

// One contiguous run of n elements: master w, gradient g (same dtype), the
// optimizer state s1 (and s2 for AdamW) and, when defined, the compute copy wc.
struct UpdateSpan {
  Tensor w, g, s1, s2, wc;
  bool decay = true;  // weight decay applies (not to norms and biases)
};

struct AdamWArgs {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  double lr = 0;
  int64_t t = 1;          // the update's number, from 1 (bias correction)
  double grad_scale = 1;  // clipping
  // Also set each span's gradient to 0 once read, in the same pass (the next
  // step then needs no zeroing pass over the gradients).
  bool zero_grads = false;
  // CPU, fp32: the AVX-512 loop where the CPU has it (cpu/adamw_avx512.h;
  // the same bits as the scalar loop); false forces the scalar loop (tests).
  bool vector = true;
};
// One AdamW update of every span; elements are cut evenly between threads
// whatever the span boundaries (an element's update does not depend on the cut).
void adamw_update(const Exec& ex, const AdamWArgs& a, const std::vector<UpdateSpan>& spans);

struct SgdArgs {
  double momentum = 0, weight_decay = 0, lr = 0, grad_scale = 1;
  bool nesterov = false, first = false;
  bool zero_grads = false;  // as AdamWArgs::zero_grads
};
void sgd_update(const Exec& ex, const SgdArgs& a, const std::vector<UpdateSpan>& spans);

}  // namespace dtrain::ops
