// A model is a sequence of top-level layers (embedding, blocks, head for the
// GPT; stem, residual blocks, classifier for the CNN) followed by a loss. This
// flat list is what the pipeline plan cuts into stages, and the model builders
// (gpt.cpp, cnn.cpp) only assemble layers: the step loop lives in lib/train.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/comm.h"
#include "kernels/elementwise_math.h"
#include "model/layer.h"
#include "model/param.h"

namespace dtrain {

// Which part of the model this rank builds. The defaults build all of it.
struct ModelParallel {
  // Tensor-parallel group (Megatron-style splits of attention heads, MLP and
  // vocabulary); nullptr or a one-member group: no tensor parallelism.
  Communicator* tp = nullptr;
  // Sequence parallelism over tp (GPT only; see model/seq_parallel.h): the
  // layer norms, dropouts and residual stream hold a slice of the sequence.
  bool sequence_parallel = false;
  // The pipeline stage: top-level layers [first_layer, last_layer) of the
  // whole model's list; -1 = through the last one. The stage holding the last
  // layer also holds the loss.
  int64_t first_layer = 0;
  int64_t last_layer = -1;
  // Interleaved pipeline schedule: further ranges [first, last) of top-level
  // layers, after the one above, that this rank builds too (its later model
  // chunks), their parameters in the same store.
  std::vector<std::pair<int64_t, int64_t>> more_layers = {};

  // Whether top-level layer i of a model of `total` is built.
  bool holds(int64_t i, int64_t total) const {
    if (first_layer <= i && i < (last_layer < 0 ? total : last_layer)) return true;
    for (const auto& [first, last] : more_layers)
      if (first <= i && i < last) return true;
    return false;
  }
  int tp_size() const { return tp ? tp->size() : 1; }
  int tp_rank() const { return tp ? tp->rank() : 0; }
};

class Model {
 public:
  ModelFamily family = ModelFamily::gpt;
  ParamStore params;
  std::vector<std::unique_ptr<Layer>> layers;  // this stage's top-level layers
  std::unique_ptr<Loss> loss;                  // null unless this stage ends the model
  DType dtype = DType::f32;  // activations and the parameters' compute copy
  Exec exec;                 // where the layers' ops run (set before plan)
  Recompute recompute = Recompute::none;  // set before plan
  // The buffers the blocks share (model/arena.h): this model's own, or, after
  // share_arena, one set for every model of a pipeline stage.
  std::shared_ptr<BufferArena> arena = std::make_shared<BufferArena>();

  // Before plan(): take the blocks' shared buffers from `shared`, which the
  // stage's other models (its other micro-batch copies and model chunks) use
  // too; one pass runs at a time on a stage, so one set serves them all.
  // What a pass hands on out of those buffers, and something keeps beyond the
  // pass (a chunk's output or input gradient, sent; the last block's output
  // under full recomputation, which ln_f keeps), is then copied into a buffer
  // of this model's own (handed_on): another copy's pass overwrites the arena.
  void share_arena(std::shared_ptr<BufferArena> shared);
  // Top-level layer i's forward output, or its input gradient, as the next
  // layer or the pipeline receives it: the tensor itself, or its copy in this
  // model's own buffer where it lies in a shared arena. Every caller that
  // runs the layers one by one (the step loop) passes their results through.
  Tensor handed_on_forward(size_t i, const Tensor& y) const;
  Tensor handed_on_backward(size_t i, const Tensor& dx) const;

  // Appends a top-level layer, after its constructor declared its parameters;
  // records which parameters it declared (see first_param_of).
  void add_layer(std::unique_ptr<Layer> layer);
  // Index into params.all() of the first parameter that top-level layer i (or
  // a later one) declared; params.all().size() if none. When layers were not
  // added through add_layer: 0, i.e. nothing is known.
  size_t first_param_of(size_t i) const;

  // This stage's place in the whole model's top-level layer list.
  int64_t first_layer = 0;
  int64_t total_layers = 0;  // top-level layers of the whole model
  bool first_stage() const { return first_layer == 0; }
  bool last_stage() const { return loss != nullptr; }

  // Shape and dtype of this stage's input for a batch of `batch` samples
  // (token ids or images on the first stage, activations after it).
  Shape input_shape(int64_t batch) const;
  DType input_dtype() const;
  // Shape of this stage's output (the logits on the last stage).
  Shape output_shape(int64_t batch) const;
  // Shape of the targets for a batch of `batch` samples (int32).
  Shape target_shape(int64_t batch) const;
  // Items one sample contributes to throughput (tokens per sequence or 1 image).
  int64_t items_per_sample() const;

  // Allocates every activation buffer for micro-batches of up to `max_batch`.
  void plan(int64_t max_batch);
  // Forward through every layer and the loss (last stage only).
  LossStats forward(const Tensor& x, const Tensor& y, const Ctx& ctx);
  // Backward of (scale * mean loss) of the last forward; accumulates gradients.
  // Returns dL/d(stage input) (undefined on the first stage: token ids).
  Tensor backward(double scale, const Ctx& ctx);
  // The same through this stage's layers only, for stages before the last.
  Tensor forward_layers(const Tensor& x, const Ctx& ctx);
  Tensor backward_layers(const Tensor& dy, const Ctx& ctx);
  // Summed cost of a micro-batch of `batch` samples, per layer then total.
  std::vector<Cost> layer_costs(int64_t batch) const;
  Cost cost(int64_t batch) const;

  // Model-specific shape facts, set by the builder.
  Shape sample_shape;   // the whole model's input: (T) for the GPT, (C, H, W) for the CNN
  Shape target_sample_shape;  // (T) for the GPT, () for the CNN
  Shape stage_sample_shape;   // this stage's input per sample (= sample_shape on the first)

 private:
  std::vector<size_t> params_before_;  // parameters declared before each add_layer'd layer
  size_t declared_at_last_add_ = 0;
  bool arena_shared_ = false;
  bool planned_ = false;  // the layers hold pointers into `arena` from plan() on
  // Own copies of what leaves the shared arena (see share_arena): a forward
  // output (after layer fwd_boundary_at_) and the first layer's input gradient.
  size_t fwd_boundary_at_ = SIZE_MAX;
  Tensor fwd_boundary_, bwd_boundary_;
};

// Builds a model (or the part `par` asks for) from its config with parameters
// in `dtype` on the Exec's device (its ops run there), initialised from
// `seed` (kValuesLoaded: left zero for a checkpoint to fill, see
// ParamStore::allocate). Throws ConfigError for shapes it cannot build.
std::unique_ptr<Model> build_model(const ModelConfig& cfg, int64_t seq_len, DType dtype,
                                   const Exec& ex, std::optional<uint64_t> seed, const ModelParallel& par = {});
inline std::unique_ptr<Model> build_model(const ModelConfig& cfg, int64_t seq_len, DType dtype,
                                          Device device, std::optional<uint64_t> seed,
                                          const ModelParallel& par = {}) {
  return build_model(cfg, seq_len, dtype, Exec{device}, seed, par);
}

// The whole model in fp32 on the CPU for inference on loaded weights
// (generate, export): no gradient buffers, every parameter zero until the
// caller loads it.
std::unique_ptr<Model> build_inference_model(const ModelConfig& cfg, int64_t seq_len);

// Another copy of `owner`'s layers (same config and `par`) sharing its
// parameters and gradients, with activation buffers of its own: a pipeline
// stage keeps one per micro-batch in flight. Not planned yet. `par` may ask
// for a part of the owner's layers (one model chunk of an interleaved stage,
// whose owner holds all of them).
std::unique_ptr<Model> build_replica(const Model& owner, const ModelConfig& cfg, int64_t seq_len,
                                     const ModelParallel& par = {});

// The whole model's layers and loss without allocating parameters: what the
// pipeline partitioner and the planner read costs and shapes from.
std::unique_ptr<Model> describe_model(const ModelConfig& cfg, int64_t seq_len,
                                      const ModelParallel& par = {});

// The builders behind build_model (gpt.cpp, cnn.cpp). They add the layers of
// [par.first_layer, par.last_layer) (and the loss when the range ends the
// model) and set the shapes and total_layers; build_model allocates.
void build_gpt(Model& m, const ModelConfig& cfg, int64_t seq_len, const ModelParallel& par);
// A GPT's rotary embedding: model.rope_theta and, with rope_scaling =
// "llama3", its scaling; theta 0 where model.position is not "rope".
math::Rope rope_of(const ModelConfig& cfg);
void build_cnn(Model& m, const ModelConfig& cfg, const ModelParallel& par);

}  // namespace dtrain
