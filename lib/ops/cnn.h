// The CNN's ops: convolution, batch norm and pooling, on the Exec's device.
// Geometry types are the kernels' plain structs, re-exported here so that
// layers name only the ops layer. Activations and the parameters' compute copy
// in f32, f64 or bf16; statistics (batch-norm mean, rstd, running estimates)
// and parameter gradients in the compute type (f32 under bf16).
#pragma once

#include <memory>
#include <string>

#include "core/exec.h"
#include "core/tensor.h"
#include "kernels/cpu/batchnorm.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/pool.h"

namespace dtrain::ops {

namespace cuda_ops {
class ConvRunner;  // ops/cuda/cnn_ops.h: the cuDNN plans of a convolution on a GPU
}

using ConvGeom = cpu::ConvGeom;
using BatchNormArgs = cpu::BatchNormArgs;
using PoolGeom = cpu::PoolGeom;

// A convolution planned once for batches up to max_batch: on the CPU the
// kernel's image grouping, thread count and the scratch it owns (allocated
// here, zeroed); on a GPU the cuDNN graphs and execution plans of its three
// passes, their workspace and scratch. `name` (the layer's) names it in errors.
class ConvPlan {
 public:
  // Bytes of the scratch a plan for `max_batch` images allocates (the CPU
  // kernel's column matrices and padded images, per thread; on a GPU also
  // allocated, cuDNN's own workspace not counted): what its layer's Cost counts.
  static int64_t scratch_bytes(const ConvGeom& g, int64_t max_batch, DType act);
  ConvPlan() = default;
  ConvPlan(const Exec& ex, const ConvGeom& g, int64_t max_batch, DType act, const std::string& name = "conv2d");
  const ConvGeom& geom() const { return g_; }
  // On a GPU, the cuDNN engine each pass of the planned batch runs (for logs
  // and the GPU tests); empty on the CPU.
  std::string engines() const;
  // x (n, C, H, W), w (O, C, kh, kw), b (O) or undefined -> y (n, O, Ho, Wo).
  void forward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y) const;
  // dw, db accumulate; dx (undefined: not wanted) = conv^T(dy) (+ dres when defined).
  void backward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& dy,
                const Tensor& dres, const Tensor& dx, const Tensor& dw, const Tensor& db) const;

 private:
  // The GPU plans; throws unless this plan was made on a GPU Exec.
  const cuda_ops::ConvRunner& runner(const Exec& ex) const;

  ConvGeom g_;
  int64_t max_batch_ = 0, group_ = 0;
  int threads_ = 1;
  Tensor scratch_;
  std::shared_ptr<const cuda_ops::ConvRunner> gpu_;  // on a GPU only
};

// Batch norm over (n, c, hw) with the statistics (c) in the compute type.
void batchnorm_forward_train(const Exec& ex, const BatchNormArgs& a, const Tensor& x,
                             const Tensor& w, const Tensor& b, const Tensor& res, const Tensor& y,
                             const Tensor& mean, const Tensor& rstd, const Tensor& running_mean,
                             const Tensor& running_var);
void batchnorm_forward_eval(const Exec& ex, const BatchNormArgs& a, const Tensor& x,
                            const Tensor& w, const Tensor& b, const Tensor& res,
                            const Tensor& running_mean, const Tensor& running_var, const Tensor& y,
                            const Tensor& mean, const Tensor& rstd);
void batchnorm_backward(const Exec& ex, const BatchNormArgs& a, bool batch_stats, const Tensor& dy,
                        const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& mean,
                        const Tensor& rstd, const Tensor& dx, const Tensor& dz, const Tensor& dw,
                        const Tensor& db);

// Max pooling over planes (n*c) of g's size; idx (int32) remembers the winners.
void maxpool_forward(const Exec& ex, const PoolGeom& g, const Tensor& x, const Tensor& y, const Tensor& idx);
void maxpool_backward(const Exec& ex, const PoolGeom& g, const Tensor& dy, const Tensor& idx, const Tensor& dx);
// Global average pooling of x (n, c, h, w) into y (n, c).
void avgpool_forward(const Exec& ex, const Tensor& x, const Tensor& y);
void avgpool_backward(const Exec& ex, const Tensor& dy, const Tensor& dx);

}  // namespace dtrain::ops
