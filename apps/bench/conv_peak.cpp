// The convolution kernels on every convolution of the shipped CNN configs
// (configs/cnn-mnist.toml, cnn-fashion-mnist.toml: stem 16, stages 16-32-64,
// batch 64), one thread, forward and backward (dx with a residual, dW) in
// fp32 and bf16: the CPU time per pass (median of `reps`) and its GFLOP/s.
// One thread because the step runs these on each thread's share of the batch;
// CPU time because a shared machine's load disturbs it less than wall time.
//
//   conv_peak [reps] [--dump FILE]
//
// --dump appends the bf16 outputs (y, dx, dW) of every shape to FILE, to
// compare two builds' bits with cmp.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/conv.h"
#include "bench_timing.h"
#include "kernels/cpu/gemm.h"

using dtrain::bench::median;
using dtrain::bench::process_seconds;

namespace {

using dtrain::bf16;
using dtrain::cpu::ConvGeom;

ConvGeom geom(int64_t c, int64_t hw, int64_t o, int64_t k, int64_t s, int64_t p) {
  ConvGeom g;
  g.c = c, g.h = g.w = hw, g.o = o, g.kh = g.kw = k, g.stride = s, g.pad = p;
  return g;
}

struct Times {
  double fwd, bwd;
};

// Median CPU seconds of forward and backward for storage T (bf16: the mixed-precision kernels).
template <class T>
Times run(const ConvGeom& g, int64_t n, bool dx_wanted, int reps, FILE* dump) {
  using A = dtrain::compute_t<T>;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<T> x(n * g.in_size()), w(g.o * g.k()), y(n * g.out_size()), dy(n * g.out_size()), dx(n * g.in_size());
  for (T& v : x) v = T(nd(rng));
  for (T& v : w) v = T(0.1f * nd(rng));
  for (T& v : dy) v = T(nd(rng));
  std::vector<A> dw(g.o * g.k()), scratch(dtrain::cpu::conv_scratch_size(g, n, 1));
  const int64_t group = dtrain::cpu::conv_group(g, n);
  std::vector<double> tf, tb;
  for (int r = 0; r < reps; ++r) {
    std::fill(dw.begin(), dw.end(), A(0));
    const double t0 = process_seconds();
    if constexpr (std::is_same_v<T, bf16>)
      dtrain::cpu::conv2d_forward_bf16(g, n, group, x.data(), w.data(), nullptr, y.data(), scratch.data(), 1);
    else
      dtrain::cpu::conv2d_forward<T>(g, n, group, x.data(), w.data(), nullptr, y.data(), scratch.data(), 1);
    const double t1 = process_seconds();
    T* dxp = dx_wanted ? dx.data() : nullptr;
    if constexpr (std::is_same_v<T, bf16>)
      dtrain::cpu::conv2d_backward_bf16(g, n, group, x.data(), w.data(), dy.data(), x.data(), dxp, dw.data(), nullptr,
                                        scratch.data(), 1);
    else
      dtrain::cpu::conv2d_backward<T>(g, n, group, x.data(), w.data(), dy.data(), x.data(), dxp, dw.data(), nullptr,
                                      scratch.data(), 1);
    tf.push_back(t1 - t0);
    tb.push_back(process_seconds() - t1);
  }
  if (dump) {
    std::fwrite(y.data(), sizeof(T), y.size(), dump);
    std::fwrite(dx.data(), sizeof(T), dx.size(), dump);
    std::fwrite(dw.data(), sizeof(A), dw.size(), dump);
  }
  return {median(tf), median(tb)};
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 9;
  FILE* dump = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--dump" && i + 1 < argc) {
      dump = std::fopen(argv[++i], "ab");
      if (!dump) {
        std::fprintf(stderr, "conv_peak: cannot open %s\n", argv[i]);
        return 2;
      }
    } else {
      reps = std::max(1, std::atoi(argv[i]));
    }
  }
  dtrain::cpu::set_num_threads(1);
  struct Shape {
    const char* name;
    ConvGeom g;
    int count;  // in the model
    bool dx;    // the stem's input needs no gradient
  };
  const Shape shapes[] = {{"stem 1->16 28x28", geom(1, 28, 16, 3, 1, 1), 1, false},
                          {"stage0 16->16 28x28", geom(16, 28, 16, 3, 1, 1), 2, true},
                          {"stage1 16->32 28x28 s2", geom(16, 28, 32, 3, 2, 1), 1, true},
                          {"stage1 32->32 14x14", geom(32, 14, 32, 3, 1, 1), 1, true},
                          {"stage1 1x1 16->32 s2", geom(16, 28, 32, 1, 2, 0), 1, true},
                          {"stage2 32->64 14x14 s2", geom(32, 14, 64, 3, 2, 1), 1, true},
                          {"stage2 64->64 7x7", geom(64, 7, 64, 3, 1, 1), 1, true},
                          {"stage2 1x1 32->64 s2", geom(32, 14, 64, 1, 2, 0), 1, true}};
  const int64_t n = 64;
  std::printf("batch %ld, 1 thread, median CPU ms of %d (GFLOP/s)\n", long(n), reps);
  std::printf("%-24s | %17s %17s | %17s %17s\n", "convolution", "fp32 fwd", "fp32 bwd", "bf16 fwd", "bf16 bwd");
  Times total32{0, 0}, total16{0, 0};
  for (const Shape& s : shapes) {
    const ConvGeom& g = s.g;
    const double gf = 2e-9 * double(n * g.o * g.k() * g.ho() * g.wo());
    const Times t32 = run<float>(g, n, s.dx, reps, nullptr);
    const Times t16 = run<bf16>(g, n, s.dx, reps, dump);
    const double gb = gf * (s.dx ? 2 : 1);
    std::printf("%-24s | %7.2f (%6.1f) %7.2f (%6.1f) | %7.2f (%6.1f) %7.2f (%6.1f)\n", s.name, 1e3 * t32.fwd,
                gf / t32.fwd, 1e3 * t32.bwd, gb / t32.bwd, 1e3 * t16.fwd, gf / t16.fwd, 1e3 * t16.bwd, gb / t16.bwd);
    total32.fwd += s.count * t32.fwd, total32.bwd += s.count * t32.bwd;
    total16.fwd += s.count * t16.fwd, total16.bwd += s.count * t16.bwd;
  }
  std::printf("%-24s | %7.2f          %7.2f          | %7.2f          %7.2f\n", "model (per step)", 1e3 * total32.fwd,
              1e3 * total32.bwd, 1e3 * total16.fwd, 1e3 * total16.bwd);
  if (dump) std::fclose(dump);
  return 0;
}
