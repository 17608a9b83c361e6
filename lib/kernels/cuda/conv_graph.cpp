// cuDNN backend descriptors for the convolution passes (see conv_graph.h).
// Every descriptor lives in a Desc (destroyed with its owner); every call is
// checked, and a refusal becomes a RuntimeError naming the convolution, the
// pass, the shapes, the attribute or step and cuDNN's own reason.
#include "kernels/cuda/conv_graph.h"

#include <cudnn.h>

#include <array>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"

namespace dtrain::cuda {
namespace {

constexpr int64_t kUidX = 'x', kUidW = 'w', kUidY = 'y';

// cuDNN's status and, where it left one, its message for the last error.
std::string reason(cudnnStatus_t st) {
  std::string r = cudnnGetErrorString(st);
  char msg[512] = {};
  cudnnGetLastErrorString(msg, sizeof msg);
  if (msg[0]) r += fmt::format(" ({})", msg);
  return r;
}

// One backend descriptor, destroyed with its owner.
class Desc {
 public:
  Desc() = default;
  Desc(cudnnBackendDescriptorType_t type, const std::string& who, const char* what) {
    const cudnnStatus_t st = cudnnBackendCreateDescriptor(type, &d_);
    if (st != CUDNN_STATUS_SUCCESS)
      throw RuntimeError(fmt::format("{}: cuDNN cannot create the {} descriptor: {}", who, what, reason(st)));
  }
  ~Desc() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(Desc&& o) noexcept : d_(std::exchange(o.d_, nullptr)) {}
  Desc& operator=(Desc&& o) noexcept {
    std::swap(d_, o.d_);
    return *this;
  }
  cudnnBackendDescriptor_t get() const { return d_; }
  cudnnBackendDescriptor_t release() { return std::exchange(d_, nullptr); }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// Calls on descriptors that throw, naming `who` (the convolution and pass).
struct Calls {
  std::string who;

  void set(const Desc& d, cudnnBackendAttributeName_t attr, cudnnBackendAttributeType_t type, int64_t count,
           const void* value, const char* what) const {
    const cudnnStatus_t st = cudnnBackendSetAttribute(d.get(), attr, type, count, value);
    if (st != CUDNN_STATUS_SUCCESS)
      throw RuntimeError(fmt::format("{}: cuDNN refuses the {}: {}", who, what, reason(st)));
  }
  void finalize(const Desc& d, const char* what) const {
    const cudnnStatus_t st = cudnnBackendFinalize(d.get());
    if (st != CUDNN_STATUS_SUCCESS)
      throw RuntimeError(fmt::format("{}: cuDNN refuses the {}: {}", who, what, reason(st)));
  }
};

cudnnDataType_t data_type(DType t, const std::string& who) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default:
      throw InternalError(fmt::format("{}: no {} convolution on the GPU (f32 and bf16 only)", who, dtype_name(t)));
  }
}

// A packed NCHW tensor of dims (d0, d1, d2, d3).
Desc tensor(const Calls& c, int64_t uid, cudnnDataType_t type, std::array<int64_t, 4> dims, int64_t align,
            const char* what) {
  Desc d(CUDNN_BACKEND_TENSOR_DESCRIPTOR, c.who, what);
  const std::array<int64_t, 4> strides = {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
  c.set(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, what);
  c.set(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data(), what);
  c.set(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data(), what);
  c.set(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, what);
  c.set(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, what);
  c.finalize(d, what);
  return d;
}

std::string shape4(int64_t a, int64_t b, int64_t c, int64_t d) { return fmt::format("({}, {}, {}, {})", a, b, c, d); }

const char* note_name(int note) {
  switch (note) {
    case CUDNN_NUMERICAL_NOTE_TENSOR_CORE: return "tensor-core";
    case CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS: return "down-converts-inputs";
    case CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION: return "reduced-precision-reduction";
    case CUDNN_NUMERICAL_NOTE_FFT: return "fft";
    case CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC: return "nondeterministic";
    case CUDNN_NUMERICAL_NOTE_WINOGRAD: return "winograd";
    case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_4x4: return "winograd-4x4";
    case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_6x6: return "winograd-6x6";
    case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_13x13: return "winograd-13x13";
    case CUDNN_NUMERICAL_NOTE_STRICT_NAN_PROP: return "strict-nan";
    default: return "note";
  }
}

}  // namespace

const char* conv_pass_name(ConvPass p) {
  switch (p) {
    case ConvPass::forward: return "forward";
    case ConvPass::backward_data: return "backward-data";
    case ConvPass::backward_filter: return "backward-filter";
  }
  return "?";
}

std::string ConvGraphSpec::describe() const {
  const int64_t oh = out_h >= 0 ? out_h : g.ho(), ow = out_w >= 0 ? out_w : g.wo();
  return fmt::format("{} {}: x {} * w {} -> y {}, stride {}, pad {}, {}", name, conv_pass_name(pass),
                     shape4(n, g.c, g.h, g.w), shape4(g.o, g.c, g.kh, g.kw), shape4(n, g.o, oh, ow), g.stride,
                     g.pad, dtype_name(dtype));
}

// The descriptors a graph is made of, kept alive with it.
struct ConvGraph::Descs {
  Desc x, w, y, conv, op, graph;
};

ConvGraph::ConvGraph(const ConvGraphSpec& spec, void* handle) : spec_(spec), d_(std::make_unique<Descs>()) {
  const Calls c{spec.describe()};
  const cpu::ConvGeom& g = spec.g;
  const int64_t oh = spec.out_h >= 0 ? spec.out_h : g.ho(), ow = spec.out_w >= 0 ? spec.out_w : g.wo();
  if (spec.n <= 0 || g.c <= 0 || g.h <= 0 || g.w <= 0 || g.o <= 0 || g.kh <= 0 || g.kw <= 0 || g.stride <= 0 ||
      g.pad < 0 || oh <= 0 || ow <= 0)
    throw RuntimeError(fmt::format("{}: not a convolution cuDNN can run (a size is not positive)", c.who));
  const cudnnDataType_t type = data_type(spec.dtype, c.who);
  d_->x = tensor(c, kUidX, type, {spec.n, g.c, g.h, g.w}, spec.alignment, "input tensor x");
  d_->w = tensor(c, kUidW, type, {g.o, g.c, g.kh, g.kw}, spec.alignment, "weight tensor w");
  d_->y = tensor(c, kUidY, type, {spec.n, g.o, oh, ow}, spec.alignment, "output tensor y");

  d_->conv = Desc(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, c.who, "convolution");
  const int64_t dims = 2;
  const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const std::array<int64_t, 2> dil = {1, 1}, stride = {g.stride, g.stride}, pad = {g.pad, g.pad};
  c.set(d_->conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims, "convolution's spatial dims");
  c.set(d_->conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, "convolution's compute type");
  c.set(d_->conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode, "convolution mode");
  c.set(d_->conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil.data(), "convolution's dilations");
  c.set(d_->conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride.data(), "convolution's strides");
  c.set(d_->conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad.data(), "convolution's padding");
  c.set(d_->conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad.data(), "convolution's padding");
  c.finalize(d_->conv, "convolution descriptor");

  const float alpha = 1.f, beta = static_cast<float>(spec.beta);
  cudnnBackendDescriptor_t xd = d_->x.get(), wd = d_->w.get(), yd = d_->y.get(), cd = d_->conv.get();
  switch (spec.pass) {
    case ConvPass::forward:
      d_->op = Desc(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, c.who, "forward operation");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &xd, "operation's x");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &wd, "operation's w");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &yd, "operation's y");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd,
            "operation's convolution");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha, "alpha");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta, "beta");
      break;
    case ConvPass::backward_data:
      d_->op = Desc(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, c.who, "backward-data operation");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &xd, "operation's dx");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &wd, "operation's w");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &yd, "operation's dy");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd,
            "operation's convolution");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha, "alpha");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA, CUDNN_TYPE_FLOAT, 1, &beta, "beta");
      break;
    case ConvPass::backward_filter:
      d_->op = Desc(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, c.who,
                    "backward-filter operation");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &xd,
            "operation's x");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &wd,
            "operation's dw");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &yd,
            "operation's dy");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd,
            "operation's convolution");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha, "alpha");
      c.set(d_->op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA, CUDNN_TYPE_FLOAT, 1, &beta, "beta");
      break;
  }
  // Finalizing the operation is where cuDNN checks that the shapes agree.
  c.finalize(d_->op, "operation (the shapes do not agree)");

  d_->graph = Desc(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, c.who, "operation graph");
  cudnnBackendDescriptor_t od = d_->op.get();
  c.set(d_->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &od, "graph's operations");
  if (handle) {
    cudnnHandle_t h = static_cast<cudnnHandle_t>(handle);
    c.set(d_->graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, "graph's handle");
  }
  c.finalize(d_->graph, "operation graph");
}

ConvGraph::~ConvGraph() = default;

void* ConvGraph::graph() const { return d_->graph.get(); }

int64_t ConvGraph::engine_count() const {
  int64_t count = 0, got = 0;
  const cudnnStatus_t st = cudnnBackendGetAttribute(d_->graph.get(), CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT,
                                                    CUDNN_TYPE_INT64, 1, &got, &count);
  if (st != CUDNN_STATUS_SUCCESS)
    throw RuntimeError(fmt::format("{}: cuDNN cannot count the graph's engines: {}", spec_.describe(), reason(st)));
  return count;
}

std::string conv_engine_rejection(const std::vector<int>& notes, DType dtype, bool allow_tf32) {
  for (int n : notes) {
    if (n == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) return "nondeterministic";
    if (n == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS) return "down-converts its inputs";
    if (n == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION) return "reduces in reduced precision";
    if (n == CUDNN_NUMERICAL_NOTE_TENSOR_CORE && dtype == DType::f32 && !allow_tf32)
      return "TF32 tensor cores on fp32 (train.tf32 is off)";
  }
  return {};
}

ConvExecPlan::ConvExecPlan(const ConvGraph& graph, void* handle, bool allow_tf32, int64_t max_workspace)
    : name_(graph.spec().describe()), alignment_(graph.spec().alignment) {
  const Calls c{name_};
  cudnnBackendDescriptor_t gd = static_cast<cudnnBackendDescriptor_t>(graph.graph());
  cudnnHandle_t h = static_cast<cudnnHandle_t>(handle);
  std::vector<std::string> rejected;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    const char* mode_name = mode == CUDNN_HEUR_MODE_A ? "heuristics A" : "fallback";
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, name_, "engine heuristics");
    c.set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &gd, "heuristics' graph");
    c.set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics' mode");
    cudnnStatus_t st = cudnnBackendFinalize(heur.get());
    if (st != CUDNN_STATUS_SUCCESS) {
      rejected.push_back(fmt::format("{}: {}", mode_name, reason(st)));
      continue;
    }
    int64_t count = 0;
    st = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                  nullptr);
    if (st != CUDNN_STATUS_SUCCESS || count <= 0) {
      rejected.push_back(fmt::format("{}: no engine configuration ({})", mode_name, reason(st)));
      continue;
    }
    std::vector<Desc> cfgs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, name_, "engine configuration");
      raw.push_back(cfgs.back().get());
    }
    int64_t got = 0;
    st = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                  &got, raw.data());
    if (st != CUDNN_STATUS_SUCCESS) {
      rejected.push_back(fmt::format("{}: {}", mode_name, reason(st)));
      continue;
    }
    for (int64_t i = 0; i < got && i < count; ++i) {
      // The engine behind the configuration: its index and numerical notes.
      Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR, name_, "engine");
      cudnnBackendDescriptor_t ed = engine.get();
      int64_t n = 0;
      st = cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &ed);
      if (st != CUDNN_STATUS_SUCCESS) {
        rejected.push_back(fmt::format("{} #{}: {}", mode_name, i, reason(st)));
        continue;
      }
      int64_t index = -1;
      cudnnBackendGetAttribute(ed, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &index);
      std::array<cudnnBackendNumericalNote_t, CUDNN_NUMERICAL_NOTE_TYPE_COUNT> buf{};
      int64_t nn = 0;
      st = cudnnBackendGetAttribute(ed, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                    CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &nn, buf.data());
      if (st != CUDNN_STATUS_SUCCESS) {  // unknown notes: it could be nondeterministic
        rejected.push_back(fmt::format("engine {}: numerical notes unreadable ({})", index, reason(st)));
        continue;
      }
      std::vector<int> notes;
      std::string note_list;
      for (int64_t k = 0; k < nn && k < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; ++k) {
        notes.push_back(static_cast<int>(buf[k]));
        note_list += (note_list.empty() ? "" : ", ") + std::string(note_name(buf[k]));
      }
      const std::string label = fmt::format("engine {}{}", index, note_list.empty() ? "" : " (" + note_list + ")");
      const std::string why = conv_engine_rejection(notes, graph.spec().dtype, allow_tf32);
      if (!why.empty()) {
        rejected.push_back(fmt::format("{}: {}", label, why));
        continue;
      }
      Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, name_, "execution plan");
      c.set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, "plan's handle");
      c.set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw[i],
            "plan's engine configuration");
      st = cudnnBackendFinalize(plan.get());
      if (st != CUDNN_STATUS_SUCCESS) {
        rejected.push_back(fmt::format("{}: {}", label, reason(st)));
        continue;
      }
      int64_t ws = 0;
      st = cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                    &ws);
      if (st != CUDNN_STATUS_SUCCESS) {
        rejected.push_back(fmt::format("{}: workspace size: {}", label, reason(st)));
        continue;
      }
      if (max_workspace >= 0 && ws > max_workspace) {
        rejected.push_back(fmt::format("{}: needs {} bytes of workspace, {} planned", label, ws, max_workspace));
        continue;
      }
      plan_ = plan.release();
      cfg_ = cfgs[i].release();  // kept for the plan's lifetime, as the graph is
      workspace_ = ws;
      engine_ = label;
      return;
    }
  }
  std::string list;
  for (const std::string& r : rejected) list += "\n  " + r;
  throw RuntimeError(fmt::format("{}: no deterministic cuDNN engine can run this convolution on this GPU; "
                                 "rejected:{}",
                                 name_, list.empty() ? " (none offered)" : list));
}

ConvExecPlan::~ConvExecPlan() {
  if (plan_) cudnnBackendDestroyDescriptor(static_cast<cudnnBackendDescriptor_t>(plan_));
  if (cfg_) cudnnBackendDestroyDescriptor(static_cast<cudnnBackendDescriptor_t>(cfg_));
}

void ConvExecPlan::run(void* handle, void* x, void* w, void* y, void* workspace) const {
  for (const void* p : {x, w, y})
    if (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(alignment_) != 0)
      throw InternalError(fmt::format("{}: an operand at {} is not aligned to the planned {} bytes", name_, p,
                                      alignment_));
  const Calls c{name_};
  Desc vp(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, name_, "variant pack");
  const std::array<int64_t, 3> uids = {kUidX, kUidW, kUidY};
  const std::array<void*, 3> ptrs = {x, w, y};
  c.set(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids.data(), "variant pack's ids");
  c.set(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, ptrs.data(), "variant pack's pointers");
  c.set(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace, "variant pack's workspace");
  c.finalize(vp, "variant pack");
  const cudnnStatus_t st =
      cudnnBackendExecute(static_cast<cudnnHandle_t>(handle), static_cast<cudnnBackendDescriptor_t>(plan_), vp.get());
  if (st != CUDNN_STATUS_SUCCESS) throw RuntimeError(fmt::format("{}: cuDNN execute: {}", name_, reason(st)));
}

}  // namespace dtrain::cuda
