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
class TokenSource : public DataSource {
 public:
  TokenSource(const std::string& pattern, int64_t vocab, int64_t seq_len, uint64_t seed, bool shuffle)
      : corpus_(pattern), sampler_(corpus_, seq_len, seed, shuffle, vocab) {}
  int64_t size() const override { return sampler_.windows(); }
  void fill(int64_t first, int64_t count, Tensor& x, Tensor& y) override {
    sampler_.fill(first, count, x, y);
  }
  const TokenCorpus& corpus() const { return corpus_; }

 private:
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
  // Both sets are opened whatever happens to the first: every problem is reported at once.
  std::vector<std::string> problems;
  auto open = [&](std::unique_ptr<DataSource>& into, const auto& make) {
    try {
      into = make();
    } catch (const InputError& e) {
      problems.push_back(e.what());
    }
  };
  if (cfg.model.token_model()) {
    open(s.train, [&]() -> std::unique_ptr<DataSource> {
      if (!per_replica_data(cfg))
        return std::make_unique<TokenSource>(cfg.data.train.at(0), cfg.model.vocab_size, seq_len, seed, cfg.data.shuffle);
      DTRAIN_CHECK(replica >= 0 && static_cast<size_t>(replica) < cfg.data.train.size(),
                   "data-parallel replica {} has no data.train entry ({} listed)", replica, cfg.data.train.size());
      try {  // this replica's own file, which only it reads: scanned here (not by data_problems)
        auto source = std::make_unique<TokenSource>(cfg.data.train[replica], cfg.model.vocab_size, seq_len, seed,
                                                    cfg.data.shuffle);
        source->corpus().check_vocab(cfg.model.vocab_size);
        return source;
      } catch (const InputError& e) {
        throw InputError(fmt::format("data.train[{}] (data-parallel replica {}'s own file): {}", replica, replica,
                                     e.what()));
      }
    });
    open(s.val, [&] { return std::make_unique<TokenSource>(cfg.data.val, cfg.model.vocab_size, seq_len, seed, false); });
  } else {
    open(s.train, [&] {
      return std::make_unique<ImageSource>(cfg.data.train_images, cfg.data.train_labels, cfg, cfg.data.shuffle);
    });
    open(s.val, [&] { return std::make_unique<ImageSource>(cfg.data.val_images, cfg.data.val_labels, cfg, false); });
  }
  if (problems.size() == 1) throw InputError(problems[0]);
  if (!problems.empty()) throw ConfigError(problems);
  return s;
}

}  // namespace dtrain
