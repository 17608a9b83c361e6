#include "model/model.h"

#include "core/error.h"
#include "model/planned.h"

namespace dtrain {

namespace {

Shape with_batch(int64_t batch, const Shape& sample) {
  Shape s{batch};
  for (int64_t d : sample) s.push_back(d);
  return s;
}

Shape without_batch(const Shape& s) {
  Shape out;
  for (int i = 1; i < s.rank(); ++i) out.push_back(s[i]);
  return out;
}

// The model's layers and loss for `par`, parameters declared but not allocated.
std::unique_ptr<Model> assemble(const ModelConfig& cfg, int64_t seq_len, DType dtype, const Exec& ex,
                                const ModelParallel& par) {
  auto m = std::make_unique<Model>();
  m->family = cfg.family();
  m->dtype = dtype;
  m->exec = ex;
  switch (m->family) {
    case ModelFamily::gpt: build_gpt(*m, cfg, seq_len, par); break;
    case ModelFamily::cnn: build_cnn(*m, cfg, par); break;
  }
  m->first_layer = par.first_layer;
  m->stage_sample_shape = m->sample_shape;
  return m;
}

// Per sample, the input of the stage starting at top-level layer par.first_layer.
Shape stage_input_sample(const ModelConfig& cfg, int64_t seq_len, const ModelParallel& par) {
  auto whole = describe_model(cfg, seq_len, par);
  Shape s = whole->input_shape(1);
  for (int64_t i = 0; i < par.first_layer; ++i) s = whole->layers[i]->output_shape(s);
  return without_batch(s);
}

}  // namespace

void Model::add_layer(std::unique_ptr<Layer> layer) {
  // The layer's constructor has run: its parameters are the ones declared
  // since the previous layer was added.
  params_before_.push_back(declared_at_last_add_);
  declared_at_last_add_ = params.all().size();
  layers.push_back(std::move(layer));
}

size_t Model::first_param_of(size_t i) const {
  if (params_before_.size() != layers.size()) return 0;
  return i < params_before_.size() ? params_before_[i] : params.all().size();
}

Shape Model::input_shape(int64_t batch) const { return with_batch(batch, stage_sample_shape); }

DType Model::input_dtype() const {
  return family == ModelFamily::gpt && first_stage() ? DType::i32 : dtype;  // token ids
}

Shape Model::output_shape(int64_t batch) const {
  Shape s = input_shape(batch);
  for (const auto& l : layers) s = l->output_shape(s);
  return s;
}

Shape Model::target_shape(int64_t batch) const { return with_batch(batch, target_sample_shape); }

int64_t Model::items_per_sample() const { return target_sample_shape.numel(); }

void Model::share_arena(std::shared_ptr<BufferArena> shared) {
  DTRAIN_CHECK(shared, "share_arena: no arena");
  DTRAIN_CHECK(!planned_, "share_arena after plan(): the layers already took their buffers");
  arena = std::move(shared);
  arena_shared_ = true;
}

void Model::plan(int64_t max_batch) {
  Shape s = input_shape(max_batch);
  planned_ = true;
  fwd_boundary_at_ = SIZE_MAX;
  fwd_boundary_ = bwd_boundary_ = Tensor{};
  for (size_t i = 0; i < layers.size(); ++i) {
    Layer& l = *layers[i];
    l.set_recompute(recompute, arena.get());
    l.plan(s, dtype, exec);
    s = l.output_shape(s);
  }
  if (loss) loss->plan(s, dtype, exec);
  if (!arena_shared_) return;
  // What leaves the shared arena: an output in it that the next layer does
  // not copy in (a block under full recomputation saves its input) or that
  // leaves the model; the first layer's input gradient, sent to the stage
  // before. The blocks are consecutive, so there is one such output at most.
  s = input_shape(max_batch);
  for (size_t i = 0; i < layers.size(); ++i) {
    s = layers[i]->output_shape(s);
    if (!layers[i]->output_in_arena() || (i + 1 < layers.size() && layers[i + 1]->output_in_arena())) continue;
    DTRAIN_CHECK(fwd_boundary_at_ == SIZE_MAX, "model: layers {} and {} both hand on shared buffers",
                 fwd_boundary_at_, i);
    fwd_boundary_at_ = i;
    fwd_boundary_ = Tensor::empty(s, dtype, exec.device);
  }
  if (!first_stage() && !layers.empty() && layers[0]->input_grad_in_arena())
    bwd_boundary_ = Tensor::empty(input_shape(max_batch), dtype, exec.device);
}

Tensor Model::handed_on_forward(size_t i, const Tensor& y) const {
  if (i != fwd_boundary_at_) return y;
  Tensor own = planned_view(fwd_boundary_, y.shape());
  ops::copy(exec, y, own);
  return own;
}

Tensor Model::handed_on_backward(size_t i, const Tensor& dx) const {
  if (i != 0 || !bwd_boundary_.defined()) return dx;
  Tensor own = planned_view(bwd_boundary_, dx.shape());
  ops::copy(exec, dx, own);
  return own;
}

Tensor Model::forward_layers(const Tensor& x, const Ctx& ctx) {
  Tensor h = x;
  for (size_t i = 0; i < layers.size(); ++i) h = handed_on_forward(i, layers[i]->forward(h, ctx));
  return h;
}

Tensor Model::backward_layers(const Tensor& dy, const Ctx& ctx) {
  Tensor g = dy;
  for (size_t i = layers.size(); i-- > 0;) g = handed_on_backward(i, layers[i]->backward(g, ctx));
  return g;
}

LossStats Model::forward(const Tensor& x, const Tensor& y, const Ctx& ctx) {
  DTRAIN_CHECK(loss, "forward with a loss on a stage that does not end the model");
  return loss->forward(forward_layers(x, ctx), y);
}

Tensor Model::backward(double scale, const Ctx& ctx) {
  DTRAIN_CHECK(loss, "backward from the loss on a stage that does not end the model");
  return backward_layers(loss->backward(scale), ctx);
}

std::vector<Cost> Model::layer_costs(int64_t batch) const {
  std::vector<Cost> out;
  Shape s = input_shape(batch);
  for (const auto& l : layers) {
    out.push_back(l->cost(s));
    s = l->output_shape(s);
  }
  if (loss) out.push_back(loss->cost(s));
  return out;
}

Cost Model::cost(int64_t batch) const {
  Cost total;
  for (const Cost& c : layer_costs(batch)) total += c;
  return total;
}

std::unique_ptr<Model> describe_model(const ModelConfig& cfg, int64_t seq_len,
                                      const ModelParallel& par) {
  ModelParallel whole = par;
  whole.first_layer = 0;
  whole.last_layer = -1;
  return assemble(cfg, seq_len, DType::f32, Exec::cpu(), whole);
}

std::unique_ptr<Model> build_model(const ModelConfig& cfg, int64_t seq_len, DType dtype,
                                   const Exec& ex, std::optional<uint64_t> seed, const ModelParallel& par) {
  auto m = assemble(cfg, seq_len, dtype, ex, par);
  // The stage's input is the output of the layers before it.
  if (!m->first_stage()) m->stage_sample_shape = stage_input_sample(cfg, seq_len, par);
  m->params.allocate(dtype, ex, seed);
  return m;
}

std::unique_ptr<Model> build_inference_model(const ModelConfig& cfg, int64_t seq_len) {
  auto m = assemble(cfg, seq_len, DType::f32, Exec::cpu(), {});
  m->params.allocate(DType::f32, Exec::cpu(), kValuesLoaded, /*grads=*/false);
  return m;
}

std::unique_ptr<Model> build_replica(const Model& owner, const ModelConfig& cfg, int64_t seq_len,
                                     const ModelParallel& par) {
  auto m = assemble(cfg, seq_len, owner.dtype, owner.exec, par);
  m->stage_sample_shape = par.first_layer == owner.first_layer ? owner.stage_sample_shape
                          : m->first_stage()                  ? m->sample_shape
                                                               : stage_input_sample(cfg, seq_len, par);
  m->params.share(owner.params, /*subset=*/true);
  return m;
}

}  // namespace dtrain
