// Inverted dropout with masks that are a pure function of (layer key, global
// sample index, element index within the sample): a sample gets the same mask
// whichever micro-batch, rank or thread processes it. Kept values are scaled
// by 1/(1-p). The forward optionally adds a residual in the same pass
// (x + dropout(branch), the two residual adds of a GPT block).
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

// Key of a dropout site: the run seed, the step and a hash of the layer name.
uint64_t dropout_key(uint64_t seed, int64_t step, uint64_t name_hash);

// x, y: (samples, sample_numel); resid: same shape, added to y, or null.
// mask: (samples, sample_numel), 1 where kept. Sample s is global sample
// first_sample + s; element e of a sample is element first_element + e of
// the whole sample (sequence parallelism holds a slice of each sequence).
// y may alias x or resid.
template <class F>
void dropout_forward(const F* x, const F* resid, int64_t samples, int64_t sample_numel, double p,
                     uint64_t key, int64_t first_sample, int64_t first_element, uint8_t* mask, F* y);

// dx = dy * mask / (1 - p) over n elements; dx may alias dy.
template <class F>
void dropout_backward(const F* dy, const uint8_t* mask, int64_t n, double p, F* dx);

}  // namespace dtrain::cpu
