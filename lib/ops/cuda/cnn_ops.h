// The CUDA side of the CNN's ops (ops/cnn.h) and of ReLU (ops/ops.h): tensor
// checks, dtype dispatch (f32; bf16 storage with fp32 statistics and
// gradients), and the calls to cuDNN's convolution plans
// (kernels/cuda/conv_graph.h) and to the own kernels (kernels/cuda/cnn_kernels.h).
// Built with the CUDA backend only; the ops route here through DTRAIN_CUDA_OP.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "core/exec.h"
#include "core/tensor.h"
#include "kernels/cpu/batchnorm.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/pool.h"
#include "kernels/cuda/conv_graph.h"

namespace dtrain::ops::cuda_ops {

// The graph specs a ConvPlan on a GPU builds for a batch of n (tests build
// them without a GPU): forward (overwrites y), backward data and backward
// filter (both accumulate, beta = 1).
cuda::ConvGraphSpec conv_spec(const std::string& name, const cpu::ConvGeom& g, int64_t n, DType act,
                              cuda::ConvPass pass, double beta);

// A convolution on a GPU: the cuDNN graphs and execution plans of its three
// passes for the planned batch (made at plan time), the workspace and the
// scratch they need. A smaller batch (an evaluation's last) gets its own
// plans the first time it is seen, within the same workspace and scratch.
class ConvRunner {
 public:
  ConvRunner(const Exec& ex, const cpu::ConvGeom& g, int64_t max_batch, DType act, std::string name);
  ~ConvRunner();

  // x (n, C, H, W), w (O, C, kh, kw), b (O) or undefined -> y (n, O, Ho, Wo).
  void forward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y) const;
  // dw, db (fp32) accumulate; dx (may be undefined) = dres + conv^T(dy).
  void backward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor& dres,
                const Tensor& dx, const Tensor& dw, const Tensor& db) const;

  // The engine each pass of the planned batch runs ("engine 3 (tensor-core)").
  std::string engines() const;

 private:
  struct Pass {
    std::unique_ptr<cuda::ConvGraph> graph;
    std::unique_ptr<cuda::ConvExecPlan> plan;
    bool in_place = true;  // cuDNN accumulates into the destination (beta = 1); else into scratch, then added
  };
  const Pass& pass(int64_t n, cuda::ConvPass p) const;
  Pass make_pass(int64_t n, cuda::ConvPass p, bool at_plan) const;
  // Runs a plan with its workspace.
  void run(const Pass& ps, void* x, void* w, void* y) const;

  cpu::ConvGeom g_;
  int64_t max_batch_ = 0;
  DType act_ = DType::f32;
  std::string name_;
  void* handle_ = nullptr;  // cudnnHandle_t on the Exec's stream
  bool tf32_ = false;
  void* workspace_ = nullptr;  // the context's (shared) or workspace_own_
  int64_t workspace_bytes_ = 0;
  Tensor workspace_own_;  // when a plan needs more than the context's
  Tensor scratch_;        // act dtype, for passes that cannot accumulate in place
  mutable std::map<std::pair<int64_t, int>, Pass> passes_;
};

void conv_forward(const ConvRunner& r, const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b,
                  const Tensor& y);
void conv_backward(const ConvRunner& r, const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& dy,
                   const Tensor& dres, const Tensor& dx, const Tensor& dw, const Tensor& db);

void batchnorm_forward_train(const Exec& ex, const cpu::BatchNormArgs& a, const Tensor& x, const Tensor& w,
                             const Tensor& b, const Tensor& res, const Tensor& y, const Tensor& mean,
                             const Tensor& rstd, const Tensor& running_mean, const Tensor& running_var);
void batchnorm_forward_eval(const Exec& ex, const cpu::BatchNormArgs& a, const Tensor& x, const Tensor& w,
                            const Tensor& b, const Tensor& res, const Tensor& running_mean,
                            const Tensor& running_var, const Tensor& y, const Tensor& mean, const Tensor& rstd);
void batchnorm_backward(const Exec& ex, const cpu::BatchNormArgs& a, bool batch_stats, const Tensor& dy,
                        const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                        const Tensor& dx, const Tensor& dz, const Tensor& dw, const Tensor& db);

void maxpool_forward(const Exec& ex, const cpu::PoolGeom& g, const Tensor& x, const Tensor& y, const Tensor& idx);
void maxpool_backward(const Exec& ex, const cpu::PoolGeom& g, const Tensor& dy, const Tensor& idx,
                      const Tensor& dx);
void avgpool_forward(const Exec& ex, const Tensor& x, const Tensor& y);
void avgpool_backward(const Exec& ex, const Tensor& dy, const Tensor& dx);

void relu_forward(const Exec& ex, const Tensor& x, const Tensor& y);
void relu_backward(const Exec& ex, const Tensor& y, const Tensor& dy, const Tensor& dx);

}  // namespace dtrain::ops::cuda_ops
