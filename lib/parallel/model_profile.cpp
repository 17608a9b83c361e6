#include "parallel/model_profile.h"

#include <algorithm>

#include "core/comm.h"
#include "core/error.h"
#include "model/model.h"
#include "parallel/pipeline.h"

namespace dtrain {

namespace {

// A group of `size` members seen from member 0 that never communicates: what
// the layers are built with when only their shapes and costs are wanted.
class DescribeOnlyGroup : public Communicator {
 public:
  explicit DescribeOnlyGroup(int size) : size_(size) {}
  int rank() const override { return 0; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  int world_rank(int r) const override { return r; }
  WorkHandle all_reduce(Tensor, ReduceOp) override { return refuse(); }
  WorkHandle reduce_scatter(Tensor, Tensor, ReduceOp, std::vector<int64_t>) override { return refuse(); }
  WorkHandle all_gather(Tensor, Tensor, std::vector<int64_t>) override { return refuse(); }
  WorkHandle broadcast(Tensor, int) override { return refuse(); }
  WorkHandle send(Tensor, int, int) override { return refuse(); }
  WorkHandle recv(Tensor, int, int) override { return refuse(); }
  WorkHandle barrier() override { return refuse(); }
  void set_timeout(double) override {}
  const CommStats& stats() const override { return stats_; }

 private:
  [[noreturn]] WorkHandle refuse() const {
    throw InternalError("a model described for planning was asked to communicate");
  }
  int size_;
  std::string name_ = "tp (described)";
  CommStats stats_;
};

LayerProfile to_profile(const std::string& name, const Cost& c) {
  LayerProfile p;
  p.name = name;
  p.params = static_cast<double>(c.params);
  p.fwd_flops = c.fwd_flops;
  p.bwd_flops = c.bwd_flops;
  p.act_bytes = static_cast<double>(c.act_bytes);
  p.work_bytes = static_cast<double>(c.work_bytes);
  p.tp_fwd_calls = static_cast<double>(c.tp_fwd_calls);
  p.tp_bwd_calls = static_cast<double>(c.tp_bwd_calls);
  p.tp_fwd_bytes = static_cast<double>(c.tp_fwd_bytes);
  p.tp_bwd_bytes = static_cast<double>(c.tp_bwd_bytes);
  return p;
}

}  // namespace

ModelProfile profile_model(const ModelConfig& cfg, int64_t seq_len, int tp) {
  DescribeOnlyGroup group(tp);
  ModelParallel par;
  if (tp > 1) par.tp = &group;
  if (cfg.family() == ModelFamily::cnn && tp > 1)
    throw ConfigError(fmt::format("tp={}: tensor parallelism is not available for the CNN", tp));
  auto m = describe_model(cfg, seq_len, par);
  ModelProfile out;
  out.kind = cfg.type;
  out.tp = tp;
  out.seq_len = cfg.token_model() ? seq_len : 0;
  out.items_per_sample = m->items_per_sample();

  Shape s = m->input_shape(1);
  const int in_elem_bytes = 4;  // token ids are int32, activations counted as fp32
  for (const auto& layer : m->layers) {
    LayerProfile p = to_profile(layer->name(), layer->cost(s));
    p.in_bytes = static_cast<double>(s.numel() * in_elem_bytes);
    s = layer->output_shape(s);
    p.out_bytes = static_cast<double>(s.numel() * 4);
    out.layers.push_back(p);
  }
  if (m->loss) {  // the loss counts with the last layer, as the trainer partitions
    const Cost c = m->loss->cost(s);
    LayerProfile& last = out.layers.back();
    const LayerProfile loss = to_profile("loss", c);
    last.params += loss.params;
    last.fwd_flops += loss.fwd_flops;
    last.bwd_flops += loss.bwd_flops;
    last.act_bytes += loss.act_bytes;
    last.tp_fwd_calls += loss.tp_fwd_calls;
    last.tp_bwd_calls += loss.tp_bwd_calls;
    last.tp_fwd_bytes += loss.tp_fwd_bytes;
    last.tp_bwd_bytes += loss.tp_bwd_bytes;
  }
  // Tied parameters (the GPT's head and wte): a stage holding the head but not
  // the embedding declares its own copy (see build_gpt).
  for (const auto& p : m->params.all())
    if (p->tied) out.tied_params += static_cast<double>(p->numel());

  // Whole-model figures from the unsplit description (replicated layer norms
  // and biases make tp x one rank's count slightly too large).
  const Cost whole = tp > 1 ? describe_model(cfg, seq_len)->cost(1) : m->cost(1);
  out.total_params = static_cast<double>(whole.params);
  out.model_flops_per_sample = whole.fwd_flops + whole.bwd_flops;
  return out;
}

std::vector<StageProfile> profile_stages(const ModelProfile& m, int pp) {
  std::vector<double> costs;
  for (const LayerProfile& l : m.layers) costs.push_back(l.fwd_flops + l.bwd_flops);
  const std::vector<int64_t> b = partition_layers(costs, pp);
  std::vector<StageProfile> stages(pp);
  for (int s = 0; s < pp; ++s) {
    StageProfile& st = stages[s];
    st.first_layer = b[s];
    st.last_layer = b[s + 1];
    for (int64_t i = b[s]; i < b[s + 1]; ++i) {
      const LayerProfile& l = m.layers[i];
      st.params += l.params;
      st.fwd_flops += l.fwd_flops;
      st.bwd_flops += l.bwd_flops;
      st.act_bytes += l.act_bytes;
      st.max_layer_act_bytes = std::max(st.max_layer_act_bytes, l.act_bytes);
      st.max_layer_work_bytes = std::max(st.max_layer_work_bytes, l.work_bytes);
      st.max_layer_params = std::max(st.max_layer_params, l.params);
      st.in_bytes += l.in_bytes;
      st.tp_fwd_calls += l.tp_fwd_calls;
      st.tp_bwd_calls += l.tp_bwd_calls;
      st.tp_fwd_bytes += l.tp_fwd_bytes;
      st.tp_bwd_bytes += l.tp_bwd_bytes;
    }
    st.out_bytes = m.layers[b[s + 1] - 1].out_bytes;
  }
  if (pp > 1 && m.tied_params > 0) {
    stages.back().holds_tied_copy = true;
    stages.back().params += m.tied_params;
  }
  return stages;
}

}  // namespace dtrain
