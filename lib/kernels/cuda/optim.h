// Launchers of the fused optimizer updates (optim.cu): AdamW and SGD over a
// table of spans of the flat fp32 parameter buffer, each element updated by
// the shared math::adamw_element / math::sgd_element (the CPU's code), the
// bf16 compute copy written in the same pass where a span has one.
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "kernels/elementwise_math.h"

namespace dtrain::cuda::gpt {

struct OptSpan {
  float* w = nullptr;         // master (n)
  const float* g = nullptr;   // gradient (n)
  float* s1 = nullptr;        // AdamW m, SGD momentum buffer (n)
  float* s2 = nullptr;        // AdamW v (n); unused by SGD
  bf16* wc = nullptr;         // bf16 compute copy (n), or null
  int64_t n = 0;
  bool decay = true;          // use the `on` coefficients (else `off`)
};

void adamw_update(const math::AdamWCoeffs<float>& on, const math::AdamWCoeffs<float>& off,
                  const OptSpan* spans, int64_t count, void* stream);
void sgd_update(const math::SgdCoeffs<float>& on, const math::SgdCoeffs<float>& off,
                const OptSpan* spans, int64_t count, void* stream);

}  // namespace dtrain::cuda::gpt
