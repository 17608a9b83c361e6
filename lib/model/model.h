// A model is a sequence of top-level layers (embedding, blocks, head for the
// GPT; stem, residual blocks, classifier for the CNN) followed by a loss. This
// flat list is what the pipeline plan cuts into stages, and the model builders
// (gpt.cpp, cnn.cpp) only assemble layers: the step loop lives in lib/train.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/layer.h"
#include "model/param.h"

namespace dtrain {

class Model {
 public:
  std::string kind;                 // "gpt" | "cnn"
  ParamStore params;
  std::vector<std::unique_ptr<Layer>> layers;
  std::unique_ptr<Loss> loss;
  DType dtype = DType::f32;
  Device device;

  // Shape and dtype of the input for a batch of `batch` samples.
  Shape input_shape(int64_t batch) const;
  DType input_dtype() const;
  // Shape of the targets for a batch of `batch` samples (int32).
  Shape target_shape(int64_t batch) const;
  // Items one sample contributes to throughput (tokens per sequence or 1 image).
  int64_t items_per_sample() const;

  // Allocates every activation buffer for micro-batches of up to `max_batch`.
  void plan(int64_t max_batch);
  // Forward through every layer and the loss.
  LossStats forward(const Tensor& x, const Tensor& y, const Ctx& ctx);
  // Backward of (scale * mean loss) of the last forward; accumulates gradients.
  void backward(double scale, const Ctx& ctx);
  // Summed cost of a micro-batch of `batch` samples, per layer then total.
  std::vector<Cost> layer_costs(int64_t batch) const;
  Cost cost(int64_t batch) const;

  // Model-specific shape facts, set by the builder.
  Shape sample_shape;   // (T) for the GPT, (C, H, W) for the CNN
  Shape target_sample_shape;  // (T) for the GPT, () for the CNN
};

// Builds a model from its config with parameters in `dtype` on `device`,
// initialised from `seed`. Throws ConfigError for shapes it cannot build.
std::unique_ptr<Model> build_model(const ModelConfig& cfg, int64_t seq_len, DType dtype,
                                   Device device, uint64_t seed);

// The builders behind build_model (gpt.cpp, cnn.cpp). They add layers and the
// loss and set the shapes; build_model allocates the parameters.
void build_gpt(Model& m, const ModelConfig& cfg, int64_t seq_len);
void build_cnn(Model& m, const ModelConfig& cfg);

}  // namespace dtrain
