#include "model/model.h"

namespace dtrain {

Shape Model::input_shape(int64_t batch) const {
  Shape s{batch};
  for (int64_t d : sample_shape) s.push_back(d);
  return s;
}

DType Model::input_dtype() const { return kind == "gpt" ? DType::i32 : dtype; }

Shape Model::target_shape(int64_t batch) const {
  Shape s{batch};
  for (int64_t d : target_sample_shape) s.push_back(d);
  return s;
}

int64_t Model::items_per_sample() const { return target_sample_shape.numel(); }

void Model::plan(int64_t max_batch) {
  Shape s = input_shape(max_batch);
  for (auto& l : layers) {
    l->plan(s, dtype, device);
    s = l->output_shape(s);
  }
  loss->plan(s, dtype, device);
}

LossStats Model::forward(const Tensor& x, const Tensor& y, const Ctx& ctx) {
  Tensor h = x;
  for (auto& l : layers) h = l->forward(h, ctx);
  return loss->forward(h, y);
}

void Model::backward(double scale, const Ctx& ctx) {
  Tensor g = loss->backward(scale);
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) g = (*it)->backward(g, ctx);
}

std::vector<Cost> Model::layer_costs(int64_t batch) const {
  std::vector<Cost> out;
  Shape s = input_shape(batch);
  for (const auto& l : layers) {
    out.push_back(l->cost(s));
    s = l->output_shape(s);
  }
  out.push_back(loss->cost(s));
  return out;
}

Cost Model::cost(int64_t batch) const {
  Cost total;
  for (const Cost& c : layer_costs(batch)) total += c;
  return total;
}

std::unique_ptr<Model> build_model(const ModelConfig& cfg, int64_t seq_len, DType dtype,
                                   Device device, uint64_t seed) {
  auto m = std::make_unique<Model>();
  m->kind = cfg.type;
  m->dtype = dtype;
  m->device = device;
  if (cfg.type == "gpt")
    build_gpt(*m, cfg, seq_len);
  else if (cfg.type == "cnn")
    build_cnn(*m, cfg);
  else
    throw ConfigError(fmt::format("model.type: unknown model type '{}' (expected gpt or cnn)", cfg.type));
  m->params.allocate(dtype, device, seed);
  return m;
}

}  // namespace dtrain
