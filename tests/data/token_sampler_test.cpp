#include "data/token_sampler.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "core/rng.h"
#include "data/data_files.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

// A token file of n tokens with tokens[i] = i, read back.
struct Corpus {
  TempDir dir;
  std::string path = dir.file("corpus.bin");
  TokenCorpus file;
  explicit Corpus(int64_t n) : file((write_bytes(path, token_file(iota_tokens(n))), path)) {}
};

// The windows (first input token / T) of samples [first, first + count).
std::vector<int64_t> windows_of(TokenSampler& s, int64_t first, int64_t count) {
  const int64_t T = s.seq_len();
  Tensor x = Tensor::empty(Shape{count, T}, DType::i32);
  Tensor y = Tensor::empty(Shape{count, T}, DType::i32);
  s.fill(first, count, x, y);
  std::vector<int64_t> w;
  for (int64_t r = 0; r < count; ++r) w.push_back(x.data<int32_t>()[r * T] / T);
  return w;
}

std::vector<int32_t> as_vector(const Tensor& t) {
  return {t.data<int32_t>(), t.data<int32_t>() + t.numel()};
}

bool is_permutation_of_range(std::vector<int64_t> v, int64_t n) {
  std::sort(v.begin(), v.end());
  for (int64_t i = 0; i < n; ++i)
    if (v[i] != i) return false;
  return static_cast<int64_t>(v.size()) == n;
}

}  // namespace

TEST_CASE("the file is cut into (N - 1) / T non-overlapping windows") {
  Corpus a(101), b(100), c(5);
  CHECK(TokenSampler(a.file, 10, 0, false).windows() == 10);
  CHECK(TokenSampler(b.file, 10, 0, false).windows() == 9);
  CHECK(TokenSampler(c.file, 4, 0, false).windows() == 1);
  std::string msg = input_error([&] { TokenSampler s(c.file, 5, 0, false); });
  CHECK(msg == "'" + c.path + "' has 5 tokens, too few for one sequence of seq_len + 1 = 6 tokens");
}

TEST_CASE("targets are the inputs shifted by one token, and windows do not overlap") {
  Corpus corpus(101);
  const int64_t T = 10;
  TokenSampler s(corpus.file, T, 1, false);
  Tensor x = Tensor::empty(Shape{10, T}, DType::i32);
  Tensor y = Tensor::empty(Shape{10, T}, DType::i32);
  s.fill(0, 10, x, y);
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t t = 0; t < T; ++t) {
      CHECK(x.data<int32_t>()[r * T + t] == r * T + t);
      CHECK(y.data<int32_t>()[r * T + t] == r * T + t + 1);  // the last target is token 100
    }
}

TEST_CASE("without shuffling, samples are the windows in order, epoch after epoch") {
  Corpus corpus(61);
  TokenSampler s(corpus.file, 6, 123, false);
  REQUIRE(s.windows() == 10);
  std::vector<int64_t> expect;
  for (int64_t i = 0; i < 25; ++i) expect.push_back(i % 10);
  CHECK(windows_of(s, 0, 25) == expect);
  CHECK(s.epoch(9) == 0);
  CHECK(s.epoch(10) == 1);
}

TEST_CASE("shuffled: every window exactly once per epoch, a new order each epoch") {
  Corpus corpus(201);
  const int64_t W = 50;
  TokenSampler s(corpus.file, 4, 7, true);
  REQUIRE(s.windows() == W);
  std::vector<int64_t> identity(W);
  for (int64_t i = 0; i < W; ++i) identity[i] = i;
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 3; ++e) {
    epochs.push_back(windows_of(s, e * W, W));
    CHECK(is_permutation_of_range(epochs.back(), W));
    CHECK(epochs.back() != identity);
    // The documented order: random_permutation(hash_combine(seed, epoch)).
    std::vector<int64_t> perm;
    random_permutation(hash_combine(7, static_cast<uint64_t>(e)), perm, W);
    CHECK(epochs.back() == perm);
  }
  CHECK(epochs[0] != epochs[1]);
  CHECK(epochs[1] != epochs[2]);
}

TEST_CASE("shuffling is a pure function of the seed") {
  Corpus corpus(201);
  TokenSampler a(corpus.file, 4, 7, true), b(corpus.file, 4, 7, true), c(corpus.file, 4, 8, true);
  std::vector<int64_t> wa = windows_of(a, 0, 120);
  CHECK(wa == windows_of(b, 0, 120));
  CHECK(wa != windows_of(c, 0, 120));
}

TEST_CASE("batches do not depend on how the samples are split into calls") {
  Corpus corpus(201);
  for (bool shuffle : {false, true}) {
    CAPTURE(shuffle);
    const int64_t T = 4, W = 50;
    TokenSampler whole(corpus.file, T, 3, shuffle);
    Tensor x = Tensor::empty(Shape{8, T}, DType::i32), y = Tensor::empty(Shape{8, T}, DType::i32);
    whole.fill(0, 8, x, y);

    TokenSampler split(corpus.file, T, 3, shuffle);
    Tensor x2 = Tensor::empty(Shape{8, T}, DType::i32), y2 = Tensor::empty(Shape{8, T}, DType::i32);
    Tensor x2a = x2.narrow0(0, 4), y2a = y2.narrow0(0, 4);
    Tensor x2b = x2.narrow0(4, 8), y2b = y2.narrow0(4, 8);
    split.fill(0, 4, x2a, y2a);
    split.fill(4, 4, x2b, y2b);
    CHECK(as_vector(x) == as_vector(x2));
    CHECK(as_vector(y) == as_vector(y2));

    // Across epoch boundaries and out of order (a resumed run, or ranks that
    // each read their share): one sample at a time, from the end backwards.
    std::vector<int64_t> all = windows_of(whole, 40, 2 * W + 20);
    TokenSampler fresh(corpus.file, T, 3, shuffle);
    for (int64_t i = 2 * W + 19; i >= 0; --i) CHECK(windows_of(fresh, 40 + i, 1)[0] == all[i]);
  }
}

TEST_CASE("fill writes only the first count rows and checks its tensors") {
  Corpus corpus(101);
  TokenSampler s(corpus.file, 10, 0, false);
  Tensor x = Tensor::empty(Shape{6, 10}, DType::i32), y = Tensor::empty(Shape{6, 10}, DType::i32);
  std::fill_n(x.data<int32_t>(), 60, -1);
  std::fill_n(y.data<int32_t>(), 60, -1);
  s.fill(3, 4, x, y);
  CHECK(x.data<int32_t>()[0] == 30);
  CHECK(x.data<int32_t>()[39] == 69);
  CHECK(y.data<int32_t>()[39] == 70);
  CHECK(x.data<int32_t>()[40] == -1);
  CHECK(y.data<int32_t>()[59] == -1);

  Tensor wrong_len = Tensor::empty(Shape{6, 9}, DType::i32);
  Tensor wrong_type = Tensor::empty(Shape{6, 10}, DType::f32);
  CHECK_THROWS_AS(s.fill(0, 4, wrong_len, y), InternalError);
  CHECK_THROWS_AS(s.fill(0, 4, x, wrong_type), InternalError);
  CHECK_THROWS_AS(s.fill(0, 7, x, y), InternalError);
  CHECK_THROWS_AS(s.fill(-1, 1, x, y), InternalError);
}

TEST_CASE("a corpus of several files: each file's windows in file order, none spanning two files") {
  TempDir dir;
  // File k holds tokens 1000 k + i; the middle one is too short for a window.
  const std::vector<int64_t> sizes = {25, 4, 41};
  for (size_t k = 0; k < sizes.size(); ++k) {
    std::vector<uint16_t> t(static_cast<size_t>(sizes[k]));
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint16_t>(1000 * k + i);
    write_bytes(dir.file(fmt::format("part_{}.bin", k)), token_file(t));
  }
  TokenCorpus corpus(dir.file("part_*.bin"));
  const int64_t T = 4;
  TokenSampler s(corpus, T, 5, false);
  REQUIRE(s.windows() == 6 + 0 + 10);  // (25 - 1) / 4 and (41 - 1) / 4
  Tensor x = Tensor::empty(Shape{16, T}, DType::i32), y = Tensor::empty(Shape{16, T}, DType::i32);
  s.fill(0, 16, x, y);
  for (int64_t w = 0; w < 16; ++w) {
    CAPTURE(w);
    const int64_t first = w < 6 ? w * T : 2000 + (w - 6) * T;
    for (int64_t t = 0; t < T; ++t) {
      CHECK(x.data<int32_t>()[w * T + t] == first + t);
      CHECK(y.data<int32_t>()[w * T + t] == first + t + 1);
    }
  }
  // Shuffled: every window of every file once per epoch.
  TokenSampler shuffled(corpus, T, 5, true);
  Tensor xs = Tensor::empty(Shape{16, T}, DType::i32), ys = Tensor::empty(Shape{16, T}, DType::i32);
  shuffled.fill(16, 16, xs, ys);
  std::vector<int32_t> a, b;
  for (int64_t w = 0; w < 16; ++w) {
    a.push_back(x.data<int32_t>()[w * T]);
    b.push_back(xs.data<int32_t>()[w * T]);
  }
  CHECK(a != b);
  std::sort(b.begin(), b.end());
  CHECK(a == b);

  TokenCorpus only_short(dir.file("part_1.bin"));
  CHECK(input_error([&] { TokenSampler t(only_short, T, 5, false); }) ==
        "'" + dir.file("part_1.bin") + "' has 4 tokens, too few for one sequence of seq_len + 1 = 5 tokens");
  CHECK(input_error([&] { TokenSampler t(corpus, 50, 5, false); }) ==
        "'" + dir.file("part_*.bin") + "': none of its 3 files holds one sequence of seq_len + 1 = 51 tokens (the "
        "longest has 41)");
}

TEST_CASE("a sample with a token beyond the vocabulary is refused as it is read, naming the file and position") {
  TempDir dir;
  std::vector<uint16_t> t = iota_tokens(41);
  t[27] = 500;
  const std::string path = dir.file("bad.bin");
  write_bytes(path, token_file(t));
  TokenCorpus corpus(path);
  TokenSampler s(corpus, 10, 0, false, 256);
  Tensor x = Tensor::empty(Shape{2, 10}, DType::i32), y = Tensor::empty(Shape{2, 10}, DType::i32);
  CHECK_NOTHROW(s.fill(0, 2, x, y));  // windows 0 and 1: tokens [0, 20]
  CHECK(input_error([&] { s.fill(2, 1, x, y); }) ==
        "'" + path + "': token 500 at position 27 is out of range for model.vocab_size = 256");
  TokenSampler unchecked(corpus, 10, 0, false);
  CHECK_NOTHROW(unchecked.fill(2, 1, x, y));
}

TEST_CASE("a corpus of GPT-2's uint16 and LLaMA 3's uint32 files: ids beyond 65535 reach the batch as they are") {
  TempDir dir;
  // File 0 (uint16): tokens 60000 + i; file 1 (uint32): tokens 128000 + i, LLaMA 3's last ids.
  std::vector<uint16_t> a(9);
  std::vector<uint32_t> b(9);
  for (size_t i = 0; i < 9; ++i) {
    a[i] = static_cast<uint16_t>(60000 + i);
    b[i] = static_cast<uint32_t>(128000 + i);
  }
  write_bytes(dir.file("part_0.bin"), token_file(a));
  write_bytes(dir.file("part_1.bin"), token_file32(b));
  TokenCorpus corpus(dir.file("part_*.bin"));
  CHECK(corpus.files()[0].token_bytes() == 2);
  CHECK(corpus.files()[1].token_bytes() == 4);
  const int64_t T = 4;
  TokenSampler s(corpus, T, 5, false, 128256);
  REQUIRE(s.windows() == 4);
  Tensor x = Tensor::empty(Shape{4, T}, DType::i32), y = Tensor::empty(Shape{4, T}, DType::i32);
  s.fill(0, 4, x, y);
  for (int64_t w = 0; w < 4; ++w)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t first = w < 2 ? 60000 + w * T : 128000 + (w - 2) * T;
      CHECK(x.data<int32_t>()[w * T + t] == first + t);
      CHECK(y.data<int32_t>()[w * T + t] == first + t + 1);
    }
  // A model of GPT-2's padded vocabulary refuses LLaMA 3's ids, naming the file and position.
  TokenSampler small(corpus, T, 5, false, 100000);
  CHECK(input_error([&] { small.fill(2, 1, x, y); }) ==
        "'" + dir.file("part_1.bin") + "': token 128000 at position 0 is out of range for model.vocab_size = 100000");
}
