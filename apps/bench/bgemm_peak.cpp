// The bf16 matrix products side by side with the fp32 sgemm on every product
// shape of a GPT-2 124M step, the small benchmark GPT, configs/gpt.toml and
// the MNIST CNN: forward x W^T (NT), input gradient g W (NN), weight gradient
// g^T x (TN). Columns: cpu::gemm<float> (whichever fp32 kernel this CPU gets),
// then each bf16 path this CPU has (AMX, AVX512-BF16, the fp32 fallback).
// The bf16 products write C as the layers will: bf16 for NT / NN (activations
// and their gradients), fp32 accumulated (beta 1) for TN (weight gradients).
//
//   bgemm_peak [threads] [reps] [--tsv] [--only TEXT] [--cpu-time]
//
// Each case runs every column alternately, `reps` times each, and reports the
// median GFLOP/s (--cpu-time: FLOPs over the process's CPU time, i.e. per
// busy core, which a shared machine's load disturbs less; 1-thread cases are the per-head and per-image products that
// attention and convolution issue from their own parallel loops). --tsv
// prints one machine-readable line per case instead (tools/bench/
// bench_gemm_bf16.py merges them with PyTorch's timings, run in the same rounds).
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "bench_timing.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_bf16.h"

using dtrain::bench::median;
using dtrain::bench::process_seconds;

namespace {

using dtrain::bf16;
using dtrain::cpu::Bf16GemmPath;

struct Case {
  std::string what;
  bool ta, tb;
  long m, n, k;
  bool single;  // one thread
};

std::vector<Case> cases() {
  std::vector<Case> cs;
  const auto linear = [&](const std::string& name, long tokens, long in, long out) {
    cs.push_back({name + " fwd", false, true, tokens, out, in, false});
    cs.push_back({name + " dx", false, false, tokens, in, out, false});
    cs.push_back({name + " dW", true, false, out, in, tokens, false});
  };
  linear("124M qkv", 256, 768, 2304);
  linear("124M attn proj", 256, 768, 768);
  linear("124M fc", 256, 768, 3072);
  linear("124M fc proj", 256, 3072, 768);
  linear("124M logits", 256, 768, 50304);
  cs.push_back({"124M attn q k^T (1 thr)", false, true, 64, 64, 64, true});
  cs.push_back({"124M attn p v (1 thr)", false, false, 64, 64, 64, true});
  cs.push_back({"124M attn p^T g (1 thr)", true, false, 64, 64, 64, true});
  linear("small qkv", 256, 256, 768);
  linear("small proj", 256, 256, 256);
  linear("small fc", 256, 256, 1024);
  linear("small fc proj", 256, 1024, 256);
  linear("small logits", 256, 256, 50304);
  linear("gpt.toml qkv", 2048, 128, 384);
  linear("gpt.toml fc", 2048, 128, 512);
  linear("gpt.toml fc proj", 2048, 512, 128);
  // The CNN's im2col products (O, N, K), one thread each: forward W col (NN),
  // weight gradient d col^T (NT), input gradient W^T d (TN).
  const long conv[][3] = {{16, 840, 144}, {32, 392, 288}, {64, 294, 576}};
  const char* names[] = {"CNN 28x28 16ch", "CNN 14x14 32ch", "CNN 7x7 64ch"};
  for (int i = 0; i < 3; ++i) {
    const long o = conv[i][0], n = conv[i][1], k = conv[i][2];
    cs.push_back({std::string(names[i]) + " fwd (1 thr)", false, false, o, n, k, true});
    cs.push_back({std::string(names[i]) + " dW (1 thr)", false, true, o, k, n, true});
    cs.push_back({std::string(names[i]) + " dx (1 thr)", true, false, k, n, o, true});
  }
  return cs;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, reps = 7;
  bool tsv = false;
  bool cpu_time = false;  // GFLOP/s per busy core: FLOPs over the process's CPU time
  std::string only;  // --only TEXT: the cases whose name contains TEXT
  int pos = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--tsv")
      tsv = true;
    else if (std::string(argv[i]) == "--cpu-time")
      cpu_time = true;
    else if (std::string(argv[i]) == "--only" && i + 1 < argc)
      only = argv[++i];
    else if (pos++ == 0)
      threads = std::atoi(argv[i]);
    else
      reps = std::atoi(argv[i]);
  }
  dtrain::cpu::set_num_threads(threads);
  const int nt = dtrain::cpu::num_threads();
  std::vector<Bf16GemmPath> paths;
  for (Bf16GemmPath p : {Bf16GemmPath::kAmx, Bf16GemmPath::kAvx512Bf16, Bf16GemmPath::kFallback})
    if (dtrain::cpu::gemm_bf16_path_supported(p)) paths.push_back(p);
  if (!tsv) {
    std::printf("threads %d, fp32 GEMM %s, bf16 paths:", nt, dtrain::cpu::gemm_backend_name());
    for (Bf16GemmPath p : paths) std::printf(" %s", dtrain::cpu::gemm_bf16_path_name(p));
    std::printf(" (default %s); median GFLOP/s of %d%s\n", dtrain::cpu::gemm_bf16_path_name(), reps,
                cpu_time ? ", per busy core (FLOPs / process CPU time)" : "");
    std::printf("%-28s %2s %6s %6s %6s | %8s", "case", "op", "m", "n", "k", "fp32");
    for (Bf16GemmPath p : paths) std::printf(" | %13s", dtrain::cpu::gemm_bf16_path_name(p));
    std::printf(" | best bf16 / fp32\n");
  } else {
    std::printf("#case\top\tm\tn\tk\tsingle\tfp32");
    for (Bf16GemmPath p : paths) std::printf("\t%s", dtrain::cpu::gemm_bf16_path_name(p));
    std::printf("\n");
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (const Case& c : cases()) {
    if (c.what.find(only) == std::string::npos) continue;
    const long ar = c.ta ? c.k : c.m, ac = c.ta ? c.m : c.k;
    const long br = c.tb ? c.n : c.k, bc = c.tb ? c.k : c.n;
    std::vector<float> a(ar * ac), b(br * bc), c32(c.m * c.n, 0.f);
    for (float& v : a) v = u(rng);
    for (float& v : b) v = u(rng);
    std::vector<bf16> ah(a.size()), bh(b.size()), c16(c32.size(), bf16(0.f));
    dtrain::cpu::convert(a.data(), long(a.size()), ah.data());
    dtrain::cpu::convert(b.data(), long(b.size()), bh.data());
    const double flops = 2.0 * c.m * c.n * c.k;
    const int inner = std::max(1, static_cast<int>(2e8 / flops));  // ~0.5 ms per timing at least
    const bool weight_grad = c.ta;  // TN: fp32 C, accumulated
    const int use = c.single ? 1 : nt;
    omp_set_num_threads(use);
    std::vector<std::vector<double>> t(paths.size() + 1);
    for (int r = 0; r < reps; ++r)
      for (size_t col = 0; col <= paths.size(); ++col) {
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = process_seconds();
        for (int i = 0; i < inner; ++i) {
          if (col == 0)
            dtrain::cpu::gemm<float>(c.ta, c.tb, c.m, c.n, c.k, 1.f, a.data(), ac, b.data(), bc,
                                     weight_grad ? 1.f : 0.f, c32.data(), c.n);
          else if (weight_grad)
            dtrain::cpu::gemm_bf16_on(paths[col - 1], c.ta, c.tb, c.m, c.n, c.k, 1.f, ah.data(), ac, bh.data(), bc,
                                      1.f, c32.data(), c.n);
          else
            dtrain::cpu::gemm_bf16_on(paths[col - 1], c.ta, c.tb, c.m, c.n, c.k, 1.f, ah.data(), ac, bh.data(), bc,
                                      0.f, c16.data(), c.n);
        }
        const double s = cpu_time ? process_seconds() - c0
                                  : std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        t[col].push_back(flops * inner / s / 1e9);
      }
    omp_set_num_threads(nt);
    const char* op = c.ta ? (c.tb ? "TT" : "TN") : (c.tb ? "NT" : "NN");
    if (tsv) {
      std::printf("%s\t%s\t%ld\t%ld\t%ld\t%d", c.what.c_str(), op, c.m, c.n, c.k, c.single ? 1 : 0);
      for (const auto& v : t) std::printf("\t%.1f", median(v));
      std::printf("\n");
    } else {
      double best = 0;
      std::printf("%-28s %2s %6ld %6ld %6ld | %8.1f", c.what.c_str(), op, c.m, c.n, c.k, median(t[0]));
      for (size_t col = 1; col < t.size(); ++col) {
        std::printf(" | %13.1f", median(t[col]));
        best = std::max(best, median(t[col]));
      }
      std::printf(" | %5.2fx\n", best / median(t[0]));
    }
    std::fflush(stdout);
  }
  return 0;
}
