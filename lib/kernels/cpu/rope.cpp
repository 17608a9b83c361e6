#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/vmath.h"
#include "kernels/elementwise_math.h"

namespace dtrain::cpu {

template <class T>
void rope(T* qkv, int64_t b, int64_t t, int64_t c, int64_t n_head, int64_t n_kv_head, const math::Rope& rope, int64_t pos0,
          bool inverse) {
  using A = compute_t<T>;
  const int64_t d = c / n_head, half = d / 2, ld = c + 2 * n_kv_head * d;
  constexpr int64_t kPairs = 64;  // the angles of this many pairs at a time, on the stack
  // Position by position: one table of angles serves every sequence of the batch.
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < t; ++s) {
    const int64_t position = pos0 + s;
    A cs[kPairs], sn[kPairs];
    for (int64_t i0 = 0; i0 < half; i0 += kPairs) {
      const int64_t n = std::min(kPairs, half - i0);
      for (int64_t i = 0; i < n; ++i) {
        // cos and sin of A's angle, each rounded once from double.
        const double angle = static_cast<double>(math::rope_angle(position, math::rope_frequency<A>(rope, i0 + i, d)));
        cs[i] = static_cast<A>(std::cos(angle));
        sn[i] = static_cast<A>(inverse ? -std::sin(angle) : std::sin(angle));
      }
      for (int64_t seq = 0; seq < b; ++seq) {
        T* r = qkv + (seq * t + s) * ld;
        for (int64_t h = 0; h < n_head + n_kv_head; ++h) {  // the queries' heads, then the keys'
          T* x0 = r + h * d + i0;
          T* x1 = x0 + half;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) {
            A a0 = load_elem(x0[i]), a1 = load_elem(x1[i]);
            math::rope_turn(a0, a1, cs[i], sn[i]);
            store_elem(x0[i], a0);
            store_elem(x1[i], a1);
          }
        }
      }
    }
  }
}

template void rope<float>(float*, int64_t, int64_t, int64_t, int64_t, int64_t, const math::Rope&, int64_t, bool);
template void rope<double>(double*, int64_t, int64_t, int64_t, int64_t, int64_t, const math::Rope&, int64_t, bool);
template void rope<bf16>(bf16*, int64_t, int64_t, int64_t, int64_t, int64_t, const math::Rope&, int64_t, bool);

}  // namespace dtrain::cpu
