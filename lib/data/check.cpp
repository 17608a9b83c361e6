#include "data/check.h"

#include "core/error.h"
#include "data/image_dataset.h"
#include "data/token_file.h"

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
    for (auto [key, path] : {std::pair{"data.train", &cfg.data.train}, std::pair{"data.val", &cfg.data.val}})
      attempt(key, [&] { TokenFile(*path).check_vocab(cfg.model.vocab_size); });
  } else {
    const auto& d = cfg.data;
    for (auto [keys, images, labels] :
         {std::tuple{"data.train_images, data.train_labels", &d.train_images, &d.train_labels},
          std::tuple{"data.val_images, data.val_labels", &d.val_images, &d.val_labels}})
      attempt(keys, [&] {
        ImageDataset set(*images, *labels);
        set.check_shape(cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size);
        set.check_classes(cfg.model.num_classes);
      });
  }
  return out;
}

}  // namespace dtrain
