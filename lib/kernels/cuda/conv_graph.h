// The convolution through cuDNN's backend (graph) C API, split in two because
// the halves need different machines:
//   ConvGraph: tensor, convolution and operation descriptors and the
//     finalized operation graph of one pass (forward, backward data or
//     backward filter). Needs no GPU, and cuDNN checks the shapes when it
//     finalizes, so CI builds the graph of every convolution of every shipped
//     CNN config (tests/cuda_host/conv_graph_test.cpp).
//   ConvExecPlan: engine heuristics (mode A, then the fallback list) on a
//     graph, dropping every engine whose numerical notes say it is
//     nondeterministic (and, for fp32 without train.tf32, every engine that
//     rounds inputs to TF32/tensor-core precision), then the first execution
//     plan that finalizes within the workspace. Needs a GPU and a handle.
// Layout NCHW throughout, weight (O, C, kh, kw), cross-correlation (what
// PyTorch and kernels/cpu/conv.h compute). Tensors are identified by three
// ids: X (the input, or its gradient in backward data), W (the weight, or its
// gradient in backward filter) and Y (the output, or its gradient).
// No cuDNN header here: descriptors are opaque.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/cpu/conv.h"

namespace dtrain::cuda {

enum class ConvPass { forward, backward_data, backward_filter };
const char* conv_pass_name(ConvPass p);  // "forward", "backward-data", "backward-filter"

struct ConvGraphSpec {
  std::string name;  // the convolution (its layer's name), for errors
  cpu::ConvGeom g;
  int64_t n = 1;  // images
  ConvPass pass = ConvPass::forward;
  DType dtype = DType::f32;  // X, W and Y (f32 or bf16); computed in fp32
  // beta = 1: the output accumulates (Y += conv, X += conv^T, W += grad);
  // beta = 0: it is overwritten.
  double beta = 0;
  int64_t alignment = 16;  // bytes that every operand's address is a multiple of
  // Y's height and width; -1: the geometry's (g.ho(), g.wo()). Only tests set
  // them, to check that cuDNN refuses a wrong shape.
  int64_t out_h = -1, out_w = -1;

  // "conv1 forward: x (64, 16, 28, 28) * w (32, 16, 3, 3) -> y (64, 32, 28, 28), stride 1, pad 1, f32"
  std::string describe() const;
};

// The finalized operation graph of one pass. Throws RuntimeError naming the
// convolution, the pass, the shapes and cuDNN's reason when cuDNN refuses it.
class ConvGraph {
 public:
  // handle: the cudnnHandle_t to attach to the graph on a GPU; null builds it
  // without one (on a machine with no GPU).
  explicit ConvGraph(const ConvGraphSpec& spec, void* handle = nullptr);
  ~ConvGraph();
  ConvGraph(const ConvGraph&) = delete;
  ConvGraph& operator=(const ConvGraph&) = delete;

  const ConvGraphSpec& spec() const { return spec_; }
  void* graph() const;  // cudnnBackendDescriptor_t of the operation graph
  // The number of engines cuDNN has for this graph (its global count).
  int64_t engine_count() const;

 private:
  struct Descs;
  ConvGraphSpec spec_;
  std::unique_ptr<Descs> d_;
};

// Whether an engine with these numerical notes (cudnnBackendNumericalNote_t
// values) may run a pass over `dtype`: never when nondeterministic; for f32
// without TF32, never when it computes on tensor cores or down-converts its
// inputs. Returns empty when allowed, else why not (for the error that lists
// the rejected engines).
std::string conv_engine_rejection(const std::vector<int>& notes, DType dtype, bool allow_tf32);

// An execution plan for a graph on this GPU; the graph must outlive it. Throws RuntimeError naming the
// convolution and the engines it rejected when none is left.
class ConvExecPlan {
 public:
  // max_workspace: the most workspace bytes the plan may ask for (-1: any).
  ConvExecPlan(const ConvGraph& graph, void* handle, bool allow_tf32, int64_t max_workspace = -1);
  ~ConvExecPlan();
  ConvExecPlan(const ConvExecPlan&) = delete;
  ConvExecPlan& operator=(const ConvExecPlan&) = delete;

  int64_t workspace_bytes() const { return workspace_; }
  // "engine 12 (tensor-core)": for logs and test output.
  const std::string& engine() const { return engine_; }
  // Enqueues the pass on the handle's stream. x, w, y: the X, W and Y
  // operands' device addresses; workspace: at least workspace_bytes().
  void run(void* handle, void* x, void* w, void* y, void* workspace) const;

 private:
  std::string name_;
  int64_t alignment_ = 16;
  void* plan_ = nullptr;  // cudnnBackendDescriptor_t of the execution plan
  void* cfg_ = nullptr;   // and of its engine configuration
  int64_t workspace_ = 0;
  std::string engine_;
};

}  // namespace dtrain::cuda
