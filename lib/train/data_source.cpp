#include "train/data_source.h"

#include "core/error.h"
#include "data/image_dataset.h"
#include "data/image_sampler.h"
#include "data/token_file.h"
#include "data/token_sampler.h"

namespace dtrain {

namespace {

// The tokens are read as samples need them, each sample's checked against
// the vocabulary as it is read: the apps scan the whole corpus first
// (data_problems), once, and a corpus may be far larger than memory.
// A problem while training (a file changed underneath) names the key.
class TokenSource : public DataSource {
 public:
  TokenSource(std::string key, const std::string& pattern, int64_t vocab, const char* vocab_key, int64_t seq_len,
              uint64_t seed, bool shuffle)
      : key_(std::move(key)), corpus_(pattern), sampler_(corpus_, seq_len, seed, shuffle, vocab, vocab_key) {}
  int64_t size() const override { return sampler_.windows(); }
  void fill(int64_t first, int64_t count, Tensor& x, Tensor& y) override {
    try {
      sampler_.fill(first, count, x, y);
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: {}", key_, e.what()));
    }
  }
  const TokenCorpus& corpus() const { return corpus_; }
  std::string describe() const override {
    const size_t n = corpus_.files().size();
    return fmt::format("{} file{}, {} tokens, {} sequences of {} tokens", n, n == 1 ? "" : "s", corpus_.size(),
                       sampler_.windows(), sampler_.seq_len() + 1);
  }

 private:
  std::string key_;
  TokenCorpus corpus_;
  TokenSampler sampler_;
};

class ImageSource : public DataSource {
 public:
  ImageSource(const std::string& images, const std::string& labels, const Config& cfg, bool shuffle)
      : data_(checked(ImageDataset(images, labels), cfg.model)),
        sampler_(data_, cfg.data.mean, cfg.data.std, static_cast<uint64_t>(cfg.train.seed), shuffle) {}
  int64_t size() const override { return sampler_.size(); }
  void fill(int64_t first, int64_t count, Tensor& x, Tensor& y) override {
    sampler_.fill(first, count, x, y);
  }
  std::string describe() const override { return fmt::format("{} images", sampler_.size()); }

 private:
  static ImageDataset checked(ImageDataset d, const ModelConfig& m) {
    d.check_shape(m.in_channels, m.image_size, m.image_size);
    d.check_classes(m.num_classes);
    return d;
  }
  ImageDataset data_;
  ImageSampler sampler_;
};

}  // namespace

DataSources open_data(const Config& cfg, int64_t seq_len, int replica) {
  DataSources s;
  const auto seed = static_cast<uint64_t>(cfg.train.seed);
  // Both sets are opened whatever happens to the first: every problem is
  // reported at once, each naming its key.
  std::vector<std::string> problems;
  auto open = [&](const std::string& key, std::unique_ptr<DataSource>& into, const auto& make) {
    try {
      into = make(key);
    } catch (const InputError& e) {
      problems.push_back(fmt::format("{}: {}", key, e.what()));
    }
  };
  if (cfg.model.token_model()) {
    auto tokens = [&](const std::string& pattern, bool shuffle) {
      return [&, shuffle](const std::string& key) {
        // Ids the model predicts (a padded vocabulary's rows are never targets).
        return std::make_unique<TokenSource>(key, pattern, cfg.model.used_vocab(), cfg.model.used_vocab_key(),
                                             seq_len, seed, shuffle);
      };
    };
    if (!per_replica_data(cfg)) {
      open("data.train", s.train, tokens(cfg.data.train.at(0), cfg.data.shuffle));
    } else {
      DTRAIN_CHECK(replica >= 0 && static_cast<size_t>(replica) < cfg.data.train.size(),
                   "data-parallel replica {} has no data.train entry ({} listed)", replica, cfg.data.train.size());
      // This replica's own file, which only it reads: scanned here (not by data_problems).
      open(fmt::format("data.train[{}] (data-parallel replica {}'s own file)", replica, replica), s.train,
           [&](const std::string& key) -> std::unique_ptr<DataSource> {
             auto source = tokens(cfg.data.train[replica], cfg.data.shuffle)(key);
             source->corpus().check_vocab(cfg.model.used_vocab(), cfg.model.used_vocab_key());
             return source;
           });
    }
    open("data.val", s.val, tokens(cfg.data.val, false));
  } else {
    open("data.train_images, data.train_labels", s.train, [&](const std::string&) {
      return std::make_unique<ImageSource>(cfg.data.train_images, cfg.data.train_labels, cfg, cfg.data.shuffle);
    });
    open("data.val_images, data.val_labels", s.val, [&](const std::string&) {
      return std::make_unique<ImageSource>(cfg.data.val_images, cfg.data.val_labels, cfg, false);
    });
  }
  if (problems.size() == 1) throw InputError(problems[0]);
  if (!problems.empty()) throw ConfigError(problems);
  return s;
}

}  // namespace dtrain
