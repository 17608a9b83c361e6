// The ResNet-style CNN builder (torchvision BasicBlock semantics): the
// top-level layers "stem", "stages.{s}.blocks.{b}" (the first block of every
// stage after the first halves the resolution) and "head" (global average pool
// and linear classifier), then softmax cross-entropy on int32 class targets.
// That flat list is what pipeline parallelism cuts into stages. FLOPs in the
// layers' costs count the convolution and linear products only (2 per
// multiply-add); batch norm, ReLU and pooling are memory-bound passes.
#include <cstdint>

#include "model/basic_block.h"
#include "model/classifier_head.h"
#include "model/cross_entropy.h"
#include "model/model.h"
#include "model/stem.h"

namespace dtrain {

namespace {

void validate(const ModelConfig& cfg) {
  std::vector<std::string> problems;
  auto positive = [&](const std::string& key, int64_t v) {
    if (v <= 0) problems.push_back(fmt::format("model.{} must be positive (got {})", key, v));
  };
  positive("in_channels", cfg.in_channels);
  positive("image_size", cfg.image_size);
  positive("num_classes", cfg.num_classes);
  positive("stem_channels", cfg.stem_channels);
  if (cfg.num_classes > INT32_MAX)
    problems.push_back(fmt::format("model.num_classes ({}) does not fit int32 targets", cfg.num_classes));
  if (cfg.channels.empty()) problems.push_back("model.channels must have at least one entry");
  for (size_t i = 0; i < cfg.channels.size(); ++i) positive(fmt::format("channels[{}]", i), cfg.channels[i]);
  for (size_t i = 0; i < cfg.blocks.size(); ++i) positive(fmt::format("blocks[{}]", i), cfg.blocks[i]);
  if (cfg.blocks.size() != cfg.channels.size())
    problems.push_back(fmt::format("model.blocks has {} entries, model.channels {}: one per stage",
                                   cfg.blocks.size(), cfg.channels.size()));
  if (cfg.stem_pool != "none" && cfg.stem_pool != "max")
    problems.push_back(fmt::format("model.stem_pool must be \"none\" or \"max\" (got \"{}\")", cfg.stem_pool));
  // Every halving (the stem pool, then each stage after the first) needs at least 2 pixels.
  const int64_t halvings = (cfg.stem_pool == "max" ? 1 : 0) +
                           std::max<int64_t>(0, static_cast<int64_t>(cfg.channels.size()) - 1);
  if (cfg.image_size > 0 && halvings < 62 && cfg.image_size < (int64_t{1} << halvings))
    problems.push_back(fmt::format("model.image_size ({}) is too small: the stem pool and the {} "
                                   "stages halve it {} times, which needs at least {}",
                                   cfg.image_size, cfg.channels.size(), halvings,
                                   int64_t{1} << halvings));
  if (!problems.empty()) throw ConfigError(problems);
}

}  // namespace

void build_cnn(Model& m, const ModelConfig& cfg, const ModelParallel& par) {
  validate(cfg);
  int64_t total = 2;  // stem and head
  for (int64_t n : cfg.blocks) total += n;
  m.total_layers = total;
  const int64_t first = par.first_layer, last = par.last_layer < 0 ? total : par.last_layer;
  DTRAIN_CHECK(0 <= first && first < last && last <= total, "CNN stage [{}, {}) of {} top-level layers",
               first, last, total);
  auto in_stage = [&](int64_t i) { return par.holds(i, total); };
  int64_t index = 0;
  if (in_stage(index++))
    m.add_layer(std::make_unique<Stem>(m.params, "stem", cfg.in_channels, cfg.stem_channels,
                                       cfg.stem_pool == "max", /*input_grad=*/false));
  int64_t c = cfg.stem_channels;
  for (size_t s = 0; s < cfg.channels.size(); ++s)
    for (int64_t b = 0; b < cfg.blocks[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      if (in_stage(index++))
        m.add_layer(std::make_unique<BasicBlock>(m.params, fmt::format("stages.{}.blocks.{}", s, b), c,
                                                 cfg.channels[s], stride));
      c = cfg.channels[s];
    }
  if (in_stage(index++)) {
    m.add_layer(std::make_unique<ClassifierHead>(m.params, "head", c, cfg.num_classes));
    m.loss = std::make_unique<CrossEntropyLoss>();
  }
  m.sample_shape = Shape{cfg.in_channels, cfg.image_size, cfg.image_size};
  m.target_sample_shape = Shape{};
}

}  // namespace dtrain
