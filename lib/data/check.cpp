#include "data/check.h"

#include <tuple>

#include "core/error.h"
#include "data/image_dataset.h"
#include "data/token_file.h"
#include "data/token_sampler.h"

namespace dtrain {

std::vector<std::string> data_problems(const Config& cfg) {
  std::vector<std::string> out;
  auto attempt = [&](const char* keys, const auto& body) {
    try {
      body();
    } catch (const InputError& e) {
      out.push_back(fmt::format("{}: {}", keys, e.what()));
    }
  };
  if (cfg.model.type == "gpt") {
    std::vector<std::pair<std::string, std::string>> files;  // (key, path)
    // Training data that is the validation data (as dtrain eval sets it) is
    // checked once, as data.val.
    const bool same = cfg.data.train == std::vector<std::string>{cfg.data.val};
    for (size_t i = 0; i < cfg.data.train.size() && !same; ++i)
      files.emplace_back(cfg.data.train.size() > 1 ? fmt::format("data.train[{}]", i) : "data.train", cfg.data.train[i]);
    files.emplace_back("data.val", cfg.data.val);
    for (const auto& file : files)  // (not a structured binding: clang 14 cannot capture one)
      attempt(file.first.c_str(), [&] {
        const TokenCorpus corpus(file.second);
        corpus.check_vocab(cfg.model.used_vocab(), cfg.model.used_vocab_key());
        (void)TokenSampler(corpus, cfg.train.seq_len, 0, false);  // one sequence at least
      });
  } else {
    const auto& d = cfg.data;
    const bool same = d.train_images == d.val_images && d.train_labels == d.val_labels;
    for (const auto& set : {std::tuple{"data.train_images, data.train_labels", &d.train_images, &d.train_labels},
                            std::tuple{"data.val_images, data.val_labels", &d.val_images, &d.val_labels}}) {
      const std::string &images = *std::get<1>(set), &labels = *std::get<2>(set);
      if (same && &images == &d.train_images) continue;
      attempt(std::get<0>(set), [&] {
        ImageDataset data(images, labels);
        data.check_shape(cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size);
        data.check_classes(cfg.model.num_classes);
      });
    }
  }
  return out;
}

}  // namespace dtrain
