// cuBLASLt's descriptors are host objects: CI creates every matmul descriptor
// and matrix layout the backend uses (each product of the shipped configs in
// each dtype combination it runs with; the attention's batched layouts) and
// lets cuBLASLt check them, without a GPU. Also the attention's scratch
// layout and the path names.
#include <doctest/doctest.h>

#include <string>
#include <vector>

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
  // Grouped-query attention (8 query heads of 12, 2 key/value heads: qkv 96 + 2 x 24 wide): the
  // head-major K and V hold a copy per query head, so the regions are the query width's.
  const cuda::AttnLayout g = cuda::attn_layout(2, 64, 96, 8, 2);
  CHECK(ops::attention_scratch(gpu, Shape{2, 64, 144}, ops::Heads(8, 2), DType::bf16) ==
        static_cast<int64_t>((g.bytes + 3) / 4));
  // A qkv width that is not (q + 2 kv) heads is refused.
  CHECK_THROWS_AS(ops::attention_scratch(gpu, Shape{2, 64, 145}, ops::Heads(8, 2), DType::bf16), InternalError);
  CHECK_THROWS_AS(ops::attention_scratch(gpu, Shape{2, 64, 144}, ops::Heads(8, 3), DType::bf16), InternalError);
}

TEST_CASE("cuda host: matmul_path names the cuBLASLt path") {
  const Exec gpu{Device::cuda(0), nullptr, nullptr};
  CHECK(ops::matmul_path(gpu, DType::bf16) == "cuBLASLt bf16 (fp32 accumulate)");
  CHECK(ops::matmul_path(gpu, DType::f32) == "cuBLASLt fp32 (no TF32)");
  // A plan on a CUDA Exec needs its context: refused in one line, not a crash.
  CHECK_THROWS_AS(ops::MatmulPlan(gpu, {.m = 4, .n = 4, .k = 4}, DType::f32, DType::f32), InternalError);
}

TEST_CASE("cuda host: epilogue operands of every product of the shipped configs, and their descriptors") {
  // The bias vector has one element per output feature (cuBLASLt's D rows),
  // aux (GELU's input) is the product's output layout; the ops layer fuses
  // exactly where cuBLASLt takes the epilogue (ops::fused_epilogue agrees with
  // lt_epilogue_spec), and the descriptors carry what was asked.
  const Exec gpu{Device::cuda(0), nullptr, nullptr};
  size_t fused = 0, gelu = 0, dgelu = 0, bgrad = 0;
  for (const std::string& path : test::shipped_configs()) {
    const Config c = load_config(path);
    const std::string name = std::filesystem::path(path).filename().string();
    for (int64_t t : {1, 2, 4})
      for (const test::ModelGemm& mg : test::config_gemms(c, name, t)) {
        if (mg.epilogue == cuda::LtEpilogue::none) continue;
        CAPTURE(mg.what);
        CAPTURE(cuda::lt_epilogue_name(mg.epilogue));
        const cuda::LtEpilogueSpec es = cuda::lt_epilogue_spec(mg.g, mg.epilogue);
        const cuda::LtGemmSpec s = cuda::lt_spec(mg.g);
        if (mg.epilogue == cuda::LtEpilogue::bgradb) {
          CHECK(mg.wgrad);
          CHECK(es.bias_len == mg.g.m);  // one per output feature: dW's rows
          CHECK(es.bias_len == s.n);     // = cuBLASLt's D columns (BGRADB's length)
          CHECK((!s.transa && s.transb));  // cuBLASLt's N, T: the layout BGRADB is run in
        } else if (cuda::lt_epilogue_has_bias(mg.epilogue)) {
          CHECK(es.bias_len == mg.g.n);  // one per output feature
          CHECK(es.bias_len == s.m);     // = cuBLASLt's D rows
        } else {
          CHECK(es.bias_len == 0);
        }
        if (cuda::lt_epilogue_has_aux(mg.epilogue)) {
          CHECK(es.aux_ld == mg.g.ldc);
          CHECK(es.aux_ld == mg.g.n);  // the contiguous (rows, out) buffer the Mlp keeps
        }
        const ops::Epilogue oe = mg.epilogue == cuda::LtEpilogue::bias      ? ops::Epilogue::bias
                                 : mg.epilogue == cuda::LtEpilogue::dgelu   ? ops::Epilogue::dgelu
                                 : mg.epilogue == cuda::LtEpilogue::bgradb  ? ops::Epilogue::bias_grad
                                 : mg.epilogue == cuda::LtEpilogue::gelu_aux ? ops::Epilogue::gelu
                                                                             : ops::Epilogue::bias_gelu;
        CHECK(ops::fused_epilogue(gpu, oe, DType::bf16, mg.g.n) == es.ok);
        CHECK_FALSE(ops::fused_epilogue(Exec::cpu(), oe, DType::bf16, mg.g.n));
        CHECK_FALSE(ops::fused_epilogue(gpu, oe, DType::f64, mg.g.n));
        // fp32 fuses the bias and its gradient only (GELU stays the own kernel in strict fp32).
        const bool bias_only = oe == ops::Epilogue::bias || oe == ops::Epilogue::bias_grad;
        CHECK(ops::fused_epilogue(gpu, oe, DType::f32, mg.g.n) == bias_only);
        if (!es.ok) {
          CHECK_THROWS_AS(cuda::LtDescriptors(s, cuda::LtTypes::bf16, false, mg.epilogue, es), InternalError);
          continue;
        }
        // The weight gradient's types: bf16 inputs into its fp32 accumulator, or fp32.
        std::vector<cuda::LtTypes> types{oe == ops::Epilogue::bias_grad ? cuda::LtTypes::bf16_f32 : cuda::LtTypes::bf16};
        if (bias_only) types.push_back(cuda::LtTypes::f32);
        for (cuda::LtTypes lt : types) {
          const cuda::LtDescriptors d(s, lt, false, mg.epilogue, es);
          CHECK(d.epilogue_attr() == cuda::lt_epilogue_name(mg.epilogue));
          const int32_t out = lt == cuda::LtTypes::bf16 ? 14 : 0;  // CUDA_R_16BF, CUDA_R_32F
          if (cuda::lt_epilogue_has_bias(mg.epilogue)) CHECK(d.bias_type_attr() == out);
          if (cuda::lt_epilogue_has_aux(mg.epilogue)) {
            CHECK(d.aux_ld_attr() == mg.g.n);
            CHECK(d.aux_type_attr() == out);
          }
          ++fused;
        }
        gelu += mg.epilogue == cuda::LtEpilogue::gelu_aux_bias || mg.epilogue == cuda::LtEpilogue::gelu_aux;
        dgelu += mg.epilogue == cuda::LtEpilogue::dgelu;
        bgrad += mg.epilogue == cuda::LtEpilogue::bgradb;
      }
  }
  CHECK(fused > 50);
  CHECK(gelu > 5);
  CHECK(dgelu > 5);
  CHECK(bgrad > 20);
}

TEST_CASE("cuda host: an epilogue cuBLASLt would refuse is named before it is made") {
  // aux ld 12: not a multiple of 8; a batched product; a bias of the wrong length.
  const cuda::RowGemm odd = cuda::contiguous_row_gemm(false, true, 16, 12, 8);
  const cuda::LtEpilogueSpec es = cuda::lt_epilogue_spec(odd, cuda::LtEpilogue::gelu_aux_bias);
  CHECK_FALSE(es.ok);
  try {
    cuda::LtDescriptors d(cuda::lt_spec(odd), cuda::LtTypes::bf16, false, cuda::LtEpilogue::gelu_aux_bias, es);
    FAIL("an aux ld of 12 was accepted");
  } catch (const InternalError& e) {
    CHECK(std::string(e.what()).find("CUBLASLT_EPILOGUE_GELU_AUX_BIAS on a product with D of 12 x 16") !=
          std::string::npos);
  }
  const Exec gpu{Device::cuda(0), nullptr, nullptr};
  CHECK_FALSE(ops::fused_epilogue(gpu, ops::Epilogue::bias_gelu, DType::bf16, 12));  // runs unfused instead
  cuda::RowGemm batched = cuda::contiguous_row_gemm(false, true, 16, 16, 8);
  batched.batch = 2;
  CHECK_FALSE(cuda::lt_epilogue_spec(batched, cuda::LtEpilogue::bias).ok);
  const cuda::RowGemm g = cuda::contiguous_row_gemm(false, true, 16, 16, 8);
  cuda::LtEpilogueSpec wrong = cuda::lt_epilogue_spec(g, cuda::LtEpilogue::bias);
  wrong.bias_len = 15;
  CHECK_THROWS_AS(cuda::LtDescriptors(cuda::lt_spec(g), cuda::LtTypes::f32, false, cuda::LtEpilogue::bias, wrong),
                  InternalError);
  // BGRADB only in a weight gradient's layout, with a gradient of dW's rows.
  const cuda::RowGemm wg = cuda::contiguous_row_gemm(true, false, 16, 8, 32);
  CHECK(cuda::lt_epilogue_spec(wg, cuda::LtEpilogue::bgradb).ok);
  CHECK(cuda::lt_epilogue_spec(wg, cuda::LtEpilogue::bgradb).bias_len == 16);
  CHECK_FALSE(cuda::lt_epilogue_spec(cuda::contiguous_row_gemm(false, false, 16, 8, 32), cuda::LtEpilogue::bgradb).ok);
  CHECK_FALSE(cuda::lt_epilogue_spec(cuda::contiguous_row_gemm(true, true, 16, 8, 32), cuda::LtEpilogue::bgradb).ok);
  cuda::LtEpilogueSpec short_grad = cuda::lt_epilogue_spec(wg, cuda::LtEpilogue::bgradb);
  short_grad.bias_len = 8;  // D's rows: the forward bias's length, not BGRADB's
  CHECK_THROWS_AS(cuda::LtDescriptors(cuda::lt_spec(wg), cuda::LtTypes::bf16_f32, false, cuda::LtEpilogue::bgradb,
                                      short_grad),
                  InternalError);
  // The plain product keeps the default epilogue and no aux.
  const cuda::LtDescriptors plain(cuda::lt_spec(g), cuda::LtTypes::f32, false);
  CHECK(plain.epilogue_attr() == "CUBLASLT_EPILOGUE_DEFAULT");
}
