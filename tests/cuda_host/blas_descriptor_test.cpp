// cuBLASLt's descriptors are host objects: CI creates every matmul descriptor
// and matrix layout the backend uses (each product of the shipped configs in
// each dtype combination it runs with; the attention's batched layouts) and
// lets cuBLASLt check them, without a GPU. Also the attention's scratch
// layout and the path names.
#include <doctest/doctest.h>

#include <string>

#include "core/error.h"
#include "core/exec.h"
#include "kernels/cuda/attention_layout.h"
#include "kernels/cuda/matmul.h"
#include "ops/ops.h"
#include "cuda_host/model_gemms.h"

using namespace dtrain;

TEST_CASE("cuda host: compute types: fp32 strict unless TF32 is allowed, fp32 accumulation for bf16") {
  CHECK(std::string(cuda::lt_compute_name(cuda::LtTypes::f32, false)) == "CUBLAS_COMPUTE_32F");
  CHECK(std::string(cuda::lt_compute_name(cuda::LtTypes::f32, true)) == "CUBLAS_COMPUTE_32F_FAST_TF32");
  CHECK(std::string(cuda::lt_compute_name(cuda::LtTypes::bf16, true)) == "CUBLAS_COMPUTE_32F");
  CHECK(std::string(cuda::lt_compute_name(cuda::LtTypes::bf16_f32, false)) == "CUBLAS_COMPUTE_32F");
  CHECK(std::string(cuda::lt_compute_name(cuda::LtTypes::f64, false)) == "CUBLAS_COMPUTE_64F");
  CHECK(cuda::lt_in_bytes(cuda::LtTypes::bf16_f32) == 2);
  CHECK(cuda::lt_out_bytes(cuda::LtTypes::bf16_f32) == 4);
}

TEST_CASE("cuda host: cuBLASLt descriptors for every product of the shipped configs") {
  size_t made = 0;
  for (const std::string& path : test::shipped_configs()) {
    const Config c = load_config(path);
    const std::string name = std::filesystem::path(path).filename().string();
    for (int64_t t : {1, 2, 4})
      for (const test::ModelGemm& mg : test::config_gemms(c, name, t)) {
        CAPTURE(mg.what);
        const cuda::LtGemmSpec s = cuda::lt_spec(mg.g);
        // fp32 (strict and TF32), f64 (finite-difference checks), and bf16: weight
        // gradients and the attention scores into fp32, the rest bf16 -> bf16.
        for (bool tf32 : {false, true}) CHECK_NOTHROW(cuda::LtDescriptors(s, cuda::LtTypes::f32, tf32));
        CHECK_NOTHROW(cuda::LtDescriptors(s, cuda::LtTypes::f64, false));
        const cuda::LtTypes bf = mg.wgrad || mg.scores ? cuda::LtTypes::bf16_f32 : cuda::LtTypes::bf16;
        CHECK_NOTHROW(cuda::LtDescriptors(s, bf, false));
        made += 4;
      }
  }
  CHECK(made > 200);
}

TEST_CASE("cuda host: a layout cuBLASLt would refuse is named before it is made") {
  cuda::LtGemmSpec s = cuda::lt_spec(cuda::contiguous_row_gemm(false, false, 4, 5, 6));
  s.a.ld = s.a.rows - 1;
  try {
    cuda::LtDescriptors d(s, cuda::LtTypes::f32, false);
    FAIL("a layout with ld < rows was made");
  } catch (const InternalError& e) {
    CHECK(std::string(e.what()).find("layout A of 5 x 6 with ld 4") != std::string::npos);
  }
}

TEST_CASE("cuda host: alignment seen by the heuristic is the operands' common power of two") {
  auto p = [](uintptr_t a) { return reinterpret_cast<const void*>(a); };
  CHECK(cuda::lt_alignment(p(0x1000), p(0x2000), p(0x3000)) == 256);
  CHECK(cuda::lt_alignment(p(0x1000), p(0x2010), p(0x3000)) == 16);
  CHECK(cuda::lt_alignment(p(0x1002), p(0x2000), p(0x3000)) == 2);
}

TEST_CASE("cuda host: the attention's scratch regions are aligned, disjoint and within budget") {
  // GPT-2 124M, batch 16 x 1024, 12 heads, bf16; and an odd small case.
  for (auto [B, T, C, nh, bytes] : {std::tuple{16, 1024, 768, 12, 2}, std::tuple{3, 7, 12, 3, 4}}) {
    const cuda::AttnLayout l = cuda::attn_layout(B, T, C, nh, bytes);
    const size_t region = static_cast<size_t>(B) * T * C * bytes;
    const size_t offs[] = {l.q, l.k, l.v, l.o, l.dq, l.dk, l.dv, l.scores};
    for (size_t i = 0; i < 8; ++i) {
      CHECK(offs[i] % 256 == 0);
      if (i + 1 < 8) CHECK(offs[i] + region <= offs[i + 1]);
    }
    CHECK(l.chunk >= 1);
    CHECK(l.chunk <= static_cast<int64_t>(B) * nh);
    CHECK(l.scores + static_cast<size_t>(l.chunk) * T * T * 4 <= l.bytes);
    if (T == 1024) {
      CHECK(l.chunk == 32);  // 128 MiB of fp32 (1024, 1024) score matrices
    } else {
      CHECK(l.chunk == B * nh);
    }
  }
  // The op's size in compute-type elements, on a CUDA Exec (no GPU needed for the number).
  const Exec gpu{Device::cuda(0), nullptr, nullptr};
  const cuda::AttnLayout l = cuda::attn_layout(2, 64, 96, 4, 2);
  CHECK(ops::attention_scratch(gpu, Shape{2, 64, 288}, 4, DType::bf16) == static_cast<int64_t>((l.bytes + 3) / 4));
}

TEST_CASE("cuda host: matmul_path names the cuBLASLt path") {
  const Exec gpu{Device::cuda(0), nullptr, nullptr};
  CHECK(ops::matmul_path(gpu, DType::bf16) == "cuBLASLt bf16 (fp32 accumulate)");
  CHECK(ops::matmul_path(gpu, DType::f32) == "cuBLASLt fp32 (no TF32)");
  // A plan on a CUDA Exec needs its context: refused in one line, not a crash.
  CHECK_THROWS_AS(ops::MatmulPlan(gpu, {.m = 4, .n = 4, .k = 4}, DType::f32, DType::f32), InternalError);
}
