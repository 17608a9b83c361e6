// cuBLASLt, opened at its first call instead of at the program's start.
//
// Loading libcublasLt runs its initialisers: about 0.1 s on this project's
// machines (an empty program linked with it starts in 107 ms, against 2 ms
// without; with cuDNN, NCCL and the CUDA runtime 2-3 ms). Every `dtrain`
// start paid it, `--help`, `plan` and `validate` included, and so did each
// of the test suite's many starts that never touch a GPU. dtrain is
// therefore not linked with cuBLASLt: these are the definitions of the entry
// points it calls (their prototypes are cublasLt.h's, which the compiler
// checks them against), each forwarding to the library's own, looked up once
// by name in the library opened by the first call.
//
// The library is looked up by its soname first (LD_LIBRARY_PATH and the
// system's paths, as the dynamic linker would), then in the toolkit's
// library folder found at build time. Should neither open, the call throws a
// RuntimeError that says which file and why: a CPU-only machine without the
// CUDA libraries still runs everything but the GPU.
#include <cublasLt.h>
#include <dlfcn.h>

#include <string>

#include <fmt/format.h>

#include "core/error.h"

namespace dtrain::cuda {
namespace {

std::string soname() { return fmt::format("libcublasLt.so.{}", CUBLAS_VER_MAJOR); }

struct Library {
  void* handle = nullptr;
  std::string error;  // why it did not open
};

const Library& library() {
  static const Library lib = [] {
    Library l;
    l.handle = dlopen(soname().c_str(), RTLD_NOW | RTLD_LOCAL);
    if (l.handle) return l;
    l.error = dlerror();
#ifdef DTRAIN_CUBLASLT_DIR
    const std::string fallback = std::string(DTRAIN_CUBLASLT_DIR) + "/" + soname();
    l.handle = dlopen(fallback.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (l.handle) return l;
    l.error += fmt::format("; {}", dlerror());
#endif
    return l;
  }();
  return lib;
}

// The library's `name`, as a pointer of the type F of our definition of it.
template <class F>
F symbol(const char* name) {
  const Library& lib = library();
  if (!lib.handle)
    throw RuntimeError(fmt::format("cuBLASLt: {} could not be loaded ({}): the CUDA backend needs it", soname(),
                                   lib.error));
  void* p = dlsym(lib.handle, name);
  if (!p) throw RuntimeError(fmt::format("cuBLASLt: {} has no {} ({})", soname(), name, dlerror()));
  return reinterpret_cast<F>(p);
}

}  // namespace
}  // namespace dtrain::cuda

// Each entry point: `fn` is the library's function, found at the first call.
#define DTRAIN_LT_FORWARD(name, ...)                                    \
  static const auto fn = dtrain::cuda::symbol<decltype(&name)>(#name); \
  return fn(__VA_ARGS__)

extern "C" {

cublasStatus_t CUBLASWINAPI cublasLtCreate(cublasLtHandle_t* lightHandle) {
  DTRAIN_LT_FORWARD(cublasLtCreate, lightHandle);
}

cublasStatus_t CUBLASWINAPI cublasLtDestroy(cublasLtHandle_t lightHandle) {
  DTRAIN_LT_FORWARD(cublasLtDestroy, lightHandle);
}

size_t CUBLASWINAPI cublasLtGetVersion(void) { DTRAIN_LT_FORWARD(cublasLtGetVersion); }

const char* CUBLASWINAPI cublasLtGetStatusString(cublasStatus_t status) {
  DTRAIN_LT_FORWARD(cublasLtGetStatusString, status);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc, cublasComputeType_t computeType,
                                                     cudaDataType_t scaleType) {
  DTRAIN_LT_FORWARD(cublasLtMatmulDescCreate, matmulDesc, computeType, scaleType);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
  DTRAIN_LT_FORWARD(cublasLtMatmulDescDestroy, matmulDesc);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                                           cublasLtMatmulDescAttributes_t attr, const void* buf,
                                                           size_t sizeInBytes) {
  DTRAIN_LT_FORWARD(cublasLtMatmulDescSetAttribute, matmulDesc, attr, buf, sizeInBytes);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                                           cublasLtMatmulDescAttributes_t attr, void* buf,
                                                           size_t sizeInBytes, size_t* sizeWritten) {
  DTRAIN_LT_FORWARD(cublasLtMatmulDescGetAttribute, matmulDesc, attr, buf, sizeInBytes, sizeWritten);
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType type,
                                                       uint64_t rows, uint64_t cols, int64_t ld) {
  DTRAIN_LT_FORWARD(cublasLtMatrixLayoutCreate, matLayout, type, rows, cols, ld);
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
  DTRAIN_LT_FORWARD(cublasLtMatrixLayoutDestroy, matLayout);
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
                                                             cublasLtMatrixLayoutAttribute_t attr, const void* buf,
                                                             size_t sizeInBytes) {
  DTRAIN_LT_FORWARD(cublasLtMatrixLayoutSetAttribute, matLayout, attr, buf, sizeInBytes);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  DTRAIN_LT_FORWARD(cublasLtMatmulPreferenceCreate, pref);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  DTRAIN_LT_FORWARD(cublasLtMatmulPreferenceDestroy, pref);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                                 cublasLtMatmulPreferenceAttributes_t attr,
                                                                 const void* buf, size_t sizeInBytes) {
  DTRAIN_LT_FORWARD(cublasLtMatmulPreferenceSetAttribute, pref, attr, buf, sizeInBytes);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle,
                                                           cublasLtMatmulDesc_t operationDesc,
                                                           cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                                           cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                                           cublasLtMatmulPreference_t preference,
                                                           int requestedAlgoCount,
                                                           cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                                           int* returnAlgoCount) {
  DTRAIN_LT_FORWARD(cublasLtMatmulAlgoGetHeuristic, lightHandle, operationDesc, Adesc, Bdesc, Cdesc, Ddesc, preference,
                    requestedAlgoCount, heuristicResultsArray, returnAlgoCount);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
                                           const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc,
                                           const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                                           const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                                           cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo,
                                           void* workspace, size_t workspaceSizeInBytes, cudaStream_t stream) {
  DTRAIN_LT_FORWARD(cublasLtMatmul, lightHandle, computeDesc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc,
                    algo, workspace, workspaceSizeInBytes, stream);
}

}  // extern "C"
