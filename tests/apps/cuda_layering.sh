#!/usr/bin/env bash
# "No CUDA headers above core, kernels/cuda and the NCCL communicator": the
# CUDA runtime, cuBLAS(Lt), cuDNN, NCCL and cuda_bf16 headers are included
# only by core/cuda_runtime.cpp, lib/kernels/cuda/ and
# dist/nccl_communicator.cpp (tests excepted: they may reach a library).
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"
bad=$(grep -rnE '#include +[<"](cuda|cublas|cudnn|nccl|curand|cufft)[^>"]*[>"]' lib apps |
  grep -vE '^lib/kernels/cuda/|^lib/core/cuda_runtime\.cpp:|^lib/dist/nccl_communicator\.cpp:' || true)
[ -z "$bad" ] || fail "CUDA headers above their layer:
$bad"
# The check sees the includes it looks for.
grep -qE '#include +<nccl\.h>' lib/dist/nccl_communicator.cpp || fail "the pattern no longer matches nccl.h's include"
echo "cuda_layering: ok"
