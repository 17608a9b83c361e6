// cpu::gemm_bf16 and cpu::convert (gemm_bf16.h): the CPU checks, the choice of
// path, the fp32 fallback and the scalar conversions. Plain x86-64 code: the
// AMX and AVX512-BF16 kernels (gemm_bf16_x86.cpp) run only after the checks
// here said yes.
#include "kernels/cpu/gemm_bf16.h"

#include <cpuid.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_bf16_x86.h"
#include "kernels/cpu/vmath.h"

namespace dtrain::cpu {
namespace {

struct CpuFeatures {
  bool avx512 = false;      // AVX512F, BW, VL with the OS saving zmm state
  bool avx512bf16 = false;  // and AVX512_BF16
  bool amx = false;         // AMX-TILE and AMX-BF16, tile data permitted for this process
};

uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return f;  // OSXSAVE
  const uint64_t xcr0 = xgetbv0();
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
  const bool f_bw_vl = (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31));
  f.avx512 = zmm_state && f_bw_vl;
  const bool amx_hw = (d & (1u << 24)) && (d & (1u << 22));  // AMX-TILE, AMX-BF16
  unsigned a1 = 0, b1, c1, d1;
  __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
  f.avx512bf16 = f.avx512 && (a1 & (1u << 5));
  if (amx_hw && f.avx512 && (xcr0 & (3u << 17)) == (3u << 17)) {
    // Linux hands out the 8 KiB tile state only on request, once per process.
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    f.amx = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }
  return f;
}

const CpuFeatures& features() {
  static const CpuFeatures f = detect();
  return f;
}

struct PathChoice {
  Bf16GemmPath path = Bf16GemmPath::kFallback;
  std::string error;
};

PathChoice choose() {
  const char* env = std::getenv("DTRAIN_CPU_GEMM_BF16");
  const std::string want = env ? env : "auto";
  PathChoice c;
  if (want == "auto" || want.empty()) {
    c.path = features().amx          ? Bf16GemmPath::kAmx
             : features().avx512bf16 ? Bf16GemmPath::kAvx512Bf16
                                     : Bf16GemmPath::kFallback;
  } else if (want == "amx" || want == "avx512bf16" || want == "fallback") {
    c.path = want == "amx" ? Bf16GemmPath::kAmx
             : want == "avx512bf16" ? Bf16GemmPath::kAvx512Bf16
                                    : Bf16GemmPath::kFallback;
    if (!gemm_bf16_path_supported(c.path)) {
      c.error = "environment DTRAIN_CPU_GEMM_BF16=" + want + ": this CPU has no " +
                (c.path == Bf16GemmPath::kAmx ? "AMX-BF16" : "AVX512_BF16") +
                " (expected auto, or a path it has: " +
                (features().amx ? "amx, " : "") + (features().avx512bf16 ? "avx512bf16, " : "") + "fallback)";
      c.path = Bf16GemmPath::kFallback;
    }
  } else {
    c.error = "environment DTRAIN_CPU_GEMM_BF16='" + want + "': expected auto, amx, avx512bf16 or fallback";
  }
  return c;
}

const PathChoice& path_choice() {
  static const PathChoice c = choose();
  return c;
}

const uint16_t* bits(const bf16* p) { return reinterpret_cast<const uint16_t*>(p); }
uint16_t* bits(bf16* p) { return reinterpret_cast<uint16_t*>(p); }

// The stored block X[r0 .. r0 + rows)[q0 .. q0 + cols) as float into dst
// (rows x cols, row-major): a transposed operand is widened as it is stored and
// handed to the sgemm transposed, so every read runs along a row.
void widen_block(const bf16* x, int64_t ld, int64_t r0, int64_t rows, int64_t q0, int64_t cols, float* dst) {
  for (int64_t r = 0; r < rows; ++r) convert(x + (r0 + r) * ld + q0, cols, dst + r * cols);
}

// The fp32 fallback: blocks of A and B widened to float (exact), then
// cpu::gemm<float>; C accumulates over 2048-deep slices in fp32 (in C itself,
// or in a block buffer that is rounded once for a bf16 C).
void gemm_fallback(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a, int64_t lda,
                   const bf16* b, int64_t ldb, float beta, float* c32, bf16* c16, int64_t ldc) {
  constexpr int64_t kMB = 512, kNB = 1024, kKB = 2048;
  std::vector<float> fa, fb, fc;
  for (int64_t i0 = 0; i0 < m; i0 += kMB) {
    const int64_t mb = std::min(kMB, m - i0);
    for (int64_t j0 = 0; j0 < n; j0 += kNB) {
      const int64_t nb = std::min(kNB, n - j0);
      if (c16) fc.resize(mb * nb);
      float* cc = c16 ? fc.data() : c32 + i0 * ldc + j0;
      const int64_t ldcc = c16 ? nb : ldc;
      for (int64_t p0 = 0; p0 < k; p0 += kKB) {
        const int64_t kb = std::min(kKB, k - p0);
        fa.resize(mb * kb);
        fb.resize(kb * nb);
        // op(A) rows i, columns p: trans_a stores A[p][i]; likewise op(B)(p, j) = B[j][p].
        if (ta) widen_block(a, lda, p0, kb, i0, mb, fa.data()); else widen_block(a, lda, i0, mb, p0, kb, fa.data());
        if (tb) widen_block(b, ldb, j0, nb, p0, kb, fb.data()); else widen_block(b, ldb, p0, kb, j0, nb, fb.data());
        const float beta_here = p0 > 0 ? 1.f : c16 ? 0.f : beta;
        gemm<float>(ta, tb, mb, nb, kb, alpha, fa.data(), ta ? mb : kb, fb.data(), tb ? kb : nb, beta_here, cc,
                    ldcc);
      }
      if (c16)
        for (int64_t i = 0; i < mb; ++i) {
          bf16* out = c16 + (i0 + i) * ldc + j0;
          const float* v = fc.data() + i * nb;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) store_elem(out[j], beta == 0.f ? v[j] : v[j] + beta * load_elem(out[j]));
        }
    }
  }
}

void gemm_any(Bf16GemmPath path, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
              int64_t lda, const bf16* b, int64_t ldb, float beta, float* c32, bf16* c16, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.f) {  // C = beta * C, C unread when beta is 0
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        if (c32) {
          float& v = c32[i * ldc + j];
          v = beta == 0.f ? 0.f : beta * v;
        } else {
          bf16& v = c16[i * ldc + j];
          v = bf16(beta == 0.f ? 0.f : beta * float(v));
        }
      }
    return;
  }
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  uint16_t* c16b = c16 ? bits(c16) : nullptr;
  // Either kernel returns false only when its buffers could not be allocated
  // (C untouched): the fallback does the product then.
  if (path == Bf16GemmPath::kAmx &&
      x86::gemm_bf16_amx(ta, tb, m, n, k, alpha, bits(a), lda, bits(b), ldb, beta, c32, c16b, ldc, threads))
    return;
  if (path == Bf16GemmPath::kAvx512Bf16 &&
      x86::gemm_bf16_avx512(ta, tb, m, n, k, alpha, bits(a), lda, bits(b), ldb, beta, c32, c16b, ldc, threads))
    return;
  gemm_fallback(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c32, c16, ldc);
}

void require(Bf16GemmPath path) {
  if (!gemm_bf16_path_supported(path))
    throw ConfigError(std::string("bf16 GEMM path ") + gemm_bf16_path_name(path) + ": not supported by this CPU");
}

constexpr int64_t kParallelConvert = int64_t(1) << 16;

template <class Body>
void convert_chunks(int64_t n, Body body) {
  const int64_t chunk = kParallelConvert, chunks = (n + chunk - 1) / chunk;
  const int t = omp_in_parallel() || chunks < 2 ? 1 : static_cast<int>(std::min<int64_t>(omp_get_max_threads(), chunks));
  if (t == 1) {  // no parallel region at all: even a serialised one (if false) costs a team set-up,
    body(0, n);  // and the fallback GEMM converts panel rows of tens of values inside attention's loop
    return;
  }
#pragma omp parallel for schedule(static) num_threads(t)
  for (int64_t ch = 0; ch < chunks; ++ch) body(ch * chunk, std::min(chunk, n - ch * chunk));
}

}  // namespace

bool gemm_bf16_path_supported(Bf16GemmPath path) {
  switch (path) {
    case Bf16GemmPath::kAmx: return features().amx;
    case Bf16GemmPath::kAvx512Bf16: return features().avx512bf16;
    case Bf16GemmPath::kFallback: return true;
  }
  return false;
}

Bf16GemmPath gemm_bf16_path() {
  const PathChoice& c = path_choice();
  if (!c.error.empty()) throw ConfigError(c.error);
  return c.path;
}

const char* gemm_bf16_path_name(Bf16GemmPath path) {
  switch (path) {
    case Bf16GemmPath::kAmx: return "AMX bf16";
    case Bf16GemmPath::kAvx512Bf16: return "AVX512-BF16";
    case Bf16GemmPath::kFallback: return "fp32 fallback";
  }
  return "?";
}

const char* gemm_bf16_path_name() { return gemm_bf16_path_name(gemm_bf16_path()); }

void gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a, int64_t lda,
               const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_any(path_choice().path, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, nullptr, ldc);
}

void gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a, int64_t lda,
               const bf16* b, int64_t ldb, float beta, bf16* c, int64_t ldc) {
  gemm_any(path_choice().path, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, nullptr, c, ldc);
}

void gemm_bf16_on(Bf16GemmPath path, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                  const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  require(path);
  gemm_any(path, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, nullptr, ldc);
}

void gemm_bf16_on(Bf16GemmPath path, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                  const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, bf16* c, int64_t ldc) {
  require(path);
  gemm_any(path, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, nullptr, c, ldc);
}

void convert(const float* x, int64_t n, bf16* y) {
  const bool vec = features().avx512;
  convert_chunks(n, [&](int64_t i, int64_t len) {
    if (vec) {
      x86::convert_f32_to_bf16(x + i, len, bits(y + i));
      return;
    }
#pragma omp simd
    for (int64_t j = i; j < i + len; ++j) store_elem(y[j], x[j]);  // (bit moves: vectorised)
  });
}

void convert(const bf16* x, int64_t n, float* y) {
  const bool vec = features().avx512;
  convert_chunks(n, [&](int64_t i, int64_t len) {
    if (vec) {
      x86::convert_bf16_to_f32(bits(x + i), len, y + i);
      return;
    }
#pragma omp simd
    for (int64_t j = i; j < i + len; ++j) y[j] = load_elem(x[j]);
  });
}

}  // namespace dtrain::cpu
