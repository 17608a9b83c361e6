// `dtrain tokenize INPUT... --out PREFIX`: text as llm.c token files
// (PREFIX_train.bin or its shards, PREFIX_val.bin), with the tokenizer a run
// will train and generate with: the byte tokenizer, GPT-2's BPE, or a Hugging
// Face tokenizer.json (data.tokenizer = "hf": LLaMA's, Qwen's, ...). For the
// byte and GPT-2 tokenizers it writes what tools/text_to_bin.py writes, byte
// for byte; a tokenizer with ids beyond 65535 writes LLaMA 3's uint32 files.
//
// Each text file is one document, each line of a .jsonl file (its "text")
// another; every document starts as llm.c's data scripts start one: with the
// tokenizer's begin-of-text id where it has one (LLaMA 3's
// <|begin_of_text|>), else <|endoftext|> (GPT-2's, Qwen's; Tokenizer::
// document_start). The
// spellings of special tokens in the text are tokenized as text unless
// --special-tokens says to read them as the tokens.
//
// The documents are read in batches of about 64 MB and each batch is encoded
// on all cores (contiguous runs of documents, joined in input order: the
// files do not depend on the thread count). The validation split is the last
// --val-fraction of the tokens, which holds every token in memory until the
// end; or, with --val-tokens N, the first N tokens, and then nothing is held
// beyond a batch and a shard: a corpus larger than memory streams through
// (llm.c's datasets put their validation shard first the same way).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/token_file.h"
#include "data/tokenizer.h"
#include "commands.h"

namespace dtrain_cli {

namespace {

struct TokenizeOptions {
  std::vector<std::string> inputs;
  std::string out, tokenizer = "byte", tokenizer_dir, text_key = "text";
  double val_fraction = 0.1;
  int64_t val_tokens = 0, shard_tokens = 0, threads = 0;
  bool special_tokens = false;
};

constexpr int64_t kMinTokens = 2;                  // a token file holds at least one input and its target
constexpr size_t kBatchBytes = size_t{64} << 20;  // of text read and encoded at a time

// The documents of the inputs, a batch at a time.
class DocumentReader {
 public:
  struct Doc {
    std::string text;
    size_t input;  // its file, and its line in a .jsonl file (0: the whole file)
    int64_t line;
  };
  DocumentReader(const std::vector<std::string>& inputs, std::string text_key)
      : inputs_(inputs), key_(std::move(text_key)) {}

  // The next documents, about kBatchBytes of text (at least one document);
  // empty at the end.
  std::vector<Doc> next() {
    std::vector<Doc> batch;
    size_t bytes = 0;
    while (bytes < kBatchBytes && in_ < inputs_.size()) {
      const std::string& input = inputs_[in_];
      if (!input.ends_with(".jsonl")) {
        batch.push_back({read_whole(input), in_++, 0});
        bytes += batch.back().text.size();
        continue;
      }
      if (!jsonl_) {
        dtrain::require_regular_file(input, "a .jsonl file of documents");
        jsonl_.emplace(input, std::ios::binary);
        if (!*jsonl_) throw dtrain::InputError(fmt::format("'{}': cannot read the documents", input));
        line_ = 0;
      }
      std::string line;
      if (!std::getline(*jsonl_, line)) {
        if (jsonl_->bad()) throw dtrain::InputError(fmt::format("'{}': cannot read line {}", input, line_ + 1));
        jsonl_.reset();
        ++in_;
        continue;
      }
      ++line_;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw dtrain::InputError(fmt::format("'{}': line {}: not JSON: {}", input, line_, e.what()));
      }
      if (!j.is_object() || !j.contains(key_) || !j[key_].is_string())
        throw dtrain::InputError(fmt::format("'{}': line {}: expected a JSON object with a string \"{}\" "
                                             "(--text-key), got {}",
                                             input, line_, key_, line.substr(0, 80)));
      batch.push_back({j[key_].get<std::string>(), in_, line_});
      bytes += batch.back().text.size();
    }
    return batch;
  }

 private:
  static std::string read_whole(const std::string& input) {
    if (input == "-") return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    dtrain::require_regular_file(input, "the text to tokenize");
    std::ifstream f(input, std::ios::binary);
    std::string text(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>{});
    if (!f && !f.eof()) throw dtrain::InputError(fmt::format("'{}': cannot read the text to tokenize", input));
    return text;
  }

  const std::vector<std::string>& inputs_;
  std::string key_;
  size_t in_ = 0;
  std::optional<std::ifstream> jsonl_;
  int64_t line_ = 0;
};

// Where the tokens go, in order: the validation file and the training file
// or its shards (the last --shard-tokens cut of fewer than 2 tokens joins the
// one before, as text_to_bin.py cuts).
class TokenSink {
 public:
  TokenSink(const TokenizeOptions& o, bool wide) : o_(o), wide_(wide) {}

  void push(std::span<const int32_t> t) {
    if (o_.val_tokens == 0) {  // the split is known at the end
      all_.insert(all_.end(), t.begin(), t.end());
      return;
    }
    if (!val_) val_.emplace(o_.out + "_val.bin", wide_);
    const size_t to_val = static_cast<size_t>(std::min<int64_t>(o_.val_tokens - val_->size(), std::ssize(t)));
    if (to_val > 0) {
      val_->append(t.first(to_val));
      if (val_->size() == o_.val_tokens) done(*val_);
    }
    train(t.subspan(to_val));
  }

  // Writes what is left; throws InputError for a split too short.
  void finish() {
    if (o_.val_tokens == 0) {
      const auto n = std::ssize(all_);
      const auto n_val = static_cast<int64_t>(static_cast<double>(n) * o_.val_fraction);
      const std::span<const int32_t> all(all_);
      check("train", n - n_val, "another --val-fraction");
      check("val", n_val, "another --val-fraction");
      train(all.first(static_cast<size_t>(n - n_val)));
      flush_train();
      write_file(o_.out + "_val.bin", all.last(static_cast<size_t>(n_val)));
      return;
    }
    check("val", val_ ? val_->size() : 0, "fewer --val-tokens");
    if (val_ && val_->size() < o_.val_tokens)
      throw dtrain::InputError(fmt::format("the inputs hold {} tokens, fewer than the {} of --val-tokens: nothing "
                                           "would be left to train on",
                                           val_->size(), o_.val_tokens));
    flush_train();
  }

 private:
  void check(const char* name, int64_t n, const char* fix) const {
    if (n < kMinTokens)
      throw dtrain::InputError(fmt::format("the {} split would have {} token(s), a token file needs at least {}: use "
                                           "a longer text or {}",
                                           name, n, kMinTokens, fix));
  }

  // Training tokens: straight to one file, or held until a shard (and the
  // 2 tokens after it, so that no shard of 1 token is left) is there.
  void train(std::span<const int32_t> t) {
    if (t.empty()) return;
    if (o_.shard_tokens == 0) {
      if (!one_) one_.emplace(o_.out + "_train.bin", wide_);
      one_->append(t);
      return;
    }
    // The held tokens then `t`, cut from `t` itself when none are held (the
    // whole training split at the end of an unstreamed run: not copied).
    if (!pending_.empty()) pending_.insert(pending_.end(), t.begin(), t.end());
    const std::span<const int32_t> all = pending_.empty() ? t : std::span<const int32_t>(pending_);
    const auto k = static_cast<size_t>(o_.shard_tokens);
    size_t at = 0;
    for (; all.size() - at >= k + kMinTokens; at += k) write_file(shard_path(), all.subspan(at, k));
    std::vector<int32_t> rest(all.begin() + static_cast<std::ptrdiff_t>(at), all.end());
    pending_.swap(rest);
  }

  void flush_train() {
    if (o_.shard_tokens == 0) {
      check("train", one_ ? one_->size() : 0, "a smaller validation split");
      done(*one_);
      return;
    }
    if (shards_ == 0) check("train", std::ssize(pending_), "a smaller validation split");
    if (!pending_.empty()) write_file(shard_path(), pending_);  // at most --shard-tokens + 1
    pending_.clear();
  }

  std::string shard_path() { return fmt::format("{}_train_{:06d}.bin", o_.out, shards_++); }

  void write_file(const std::string& path, std::span<const int32_t> t) {
    dtrain::TokenFileWriter w(path, wide_);
    w.append(t);
    done(w);
  }

  void done(dtrain::TokenFileWriter& w) {
    w.finish();
    print_line(fmt::format("wrote {}: {} tokens ({})", w.path(), w.size(), wide_ ? "uint32" : "uint16"));
  }

  const TokenizeOptions& o_;
  bool wide_;
  std::vector<int32_t> all_, pending_;
  std::optional<dtrain::TokenFileWriter> val_, one_;
  int shards_ = 0;
};

int run_tokenize(const TokenizeOptions& o) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path out(o.out);
  std::error_code ec;
  if (out.filename().empty() || fs::is_directory(out, ec))
    throw dtrain::InputError(fmt::format("--out '{}': expected a file name prefix such as data/kjv (writes "
                                         "data/kjv_train.bin and data/kjv_val.bin), not a directory",
                                         o.out));
  if (o.shard_tokens == 1)
    throw dtrain::InputError(fmt::format("--shard-tokens: expected 0 (one file) or at least {}, got 1", kMinTokens));
  if (o.val_tokens == 1)
    throw dtrain::InputError(fmt::format("--val-tokens: expected 0 (--val-fraction) or at least {}, got 1", kMinTokens));
  dtrain::DataConfig data;
  data.tokenizer = o.tokenizer;
  data.tokenizer_dir = o.tokenizer_dir.empty() ? (o.tokenizer == "gpt2" ? "data/gpt2" : "") : o.tokenizer_dir;
  if (o.tokenizer == "hf" && data.tokenizer_dir.empty())
    throw dtrain::InputError("--tokenizer hf needs --tokenizer-dir: the directory of the tokenizer.json");
  const std::unique_ptr<dtrain::Tokenizer> tok = [&] {
    try {
      return dtrain::make_tokenizer(data);
    } catch (const dtrain::InputError& e) {
      if (o.tokenizer != "gpt2" || !o.tokenizer_dir.empty()) throw;
      throw dtrain::InputError(fmt::format("{} (--tokenizer-dir: the directory of GPT-2's encoder.json and vocab.bpe; "
                                           "the default, data/gpt2, is relative to the working directory)",
                                           e.what()));
    }
  }();
  const bool wide = tok->vocab_size() > 0x10000;  // ids beyond uint16: LLaMA 3's format for every file
  if (out.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(out.parent_path(), ec);
    if (ec)
      throw dtrain::InputError(fmt::format("--out: '{}' cannot be created: {}", out.parent_path().string(),
                                           ec.message()));
  }

  // Each document encoded on its own, starting with the marker; a batch's
  // documents shared out to threads in contiguous runs of about equal bytes.
  const int32_t marker = tok->document_start();
  const auto specials = o.special_tokens ? dtrain::Tokenizer::Specials::parse : dtrain::Tokenizer::Specials::as_text;
  const size_t max_threads =
      o.threads > 0 ? static_cast<size_t>(o.threads) : std::max(1u, std::thread::hardware_concurrency());
  DocumentReader reader(o.inputs, o.text_key);
  int64_t total_bytes = 0;  // of the input files (0: standard input among them), for progress
  for (const std::string& input : o.inputs) {
    std::error_code size_ec;
    const auto size = input == "-" ? 0 : fs::file_size(input, size_ec);
    if (input == "-" || size_ec) {
      total_bytes = 0;
      break;
    }
    total_bytes += static_cast<int64_t>(size);
  }
  TokenSink sink(o, wide);
  int64_t docs = 0, bytes = 0, tokens = 0;
  size_t threads_used = 1;
  for (std::vector<DocumentReader::Doc> batch = reader.next(); !batch.empty(); batch = reader.next()) {
    size_t batch_bytes = 0;
    for (const auto& d : batch) batch_bytes += d.text.size();
    const auto batch_docs = std::ssize(batch);
    const size_t n_threads = std::min(max_threads, batch.size());
    std::vector<size_t> cut{0};
    for (size_t i = 0, t = 1, sum = 0; i < batch.size() && t < n_threads; ++i) {
      sum += batch[i].text.size();
      if (sum * n_threads >= batch_bytes * t) {
        cut.push_back(i + 1);
        ++t;
      }
    }
    cut.push_back(batch.size());
    threads_used = std::max(threads_used, cut.size() - 1);
    std::vector<std::vector<int32_t>> parts(cut.size() - 1);
    std::vector<std::string> errors(parts.size());  // per run: its first document that failed, and why
    auto encode_run = [&](size_t p) {
      // The run's documents encoded together (sharing what their words
      // encode to); one that fails is encoded alone again, to name it.
      std::vector<std::string> texts;
      for (size_t d = cut[p]; d < cut[p + 1]; ++d) texts.push_back(std::move(batch[d].text));
      try {
        for (const std::vector<int32_t>& ids : tok->encode_documents(texts, specials)) {
          if (marker >= 0) parts[p].push_back(marker);
          parts[p].insert(parts[p].end(), ids.begin(), ids.end());
        }
      } catch (const std::exception& e) {  // InputError; bad_alloc would otherwise end the process unsaid
        errors[p] = e.what();
        for (size_t d = cut[p]; d < cut[p + 1]; ++d) {
          try {
            tok->encode(texts[d - cut[p]], specials);
          } catch (const std::exception& each) {
            const std::string line = batch[d].line ? fmt::format(": line {}", batch[d].line) : "";
            errors[p] = fmt::format("'{}'{}: {}", o.inputs[batch[d].input], line, each.what());
            return;
          }
        }
      }
    };
    {
      std::vector<std::jthread> pool;
      for (size_t p = 1; p < parts.size(); ++p) pool.emplace_back(encode_run, p);
      encode_run(0);
    }
    for (const std::string& e : errors)
      if (!e.empty()) throw dtrain::InputError(e);
    for (const auto& part : parts) {
      sink.push(part);
      tokens += std::ssize(part);
    }
    docs += batch_docs;
    bytes += static_cast<int64_t>(batch_bytes);
    // Progress on stderr once a corpus takes more than a batch.
    if (bytes > static_cast<int64_t>(batch_bytes) || total_bytes > static_cast<int64_t>(kBatchBytes)) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      eprint("dtrain tokenize: {} documents, {:.0f} MB of text{} -> {} tokens, {:.1f} MB/s\n", docs,
             static_cast<double>(bytes) / 1e6,
             total_bytes > 0 ? fmt::format(" (the inputs: {:.0f} MB)", static_cast<double>(total_bytes) / 1e6) : "",
             tokens, static_cast<double>(bytes) / 1e6 / s);
    }
  }
  if (docs == 0) throw dtrain::InputError("no documents: the inputs hold no text");
  sink.finish();

  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print_line(fmt::format("tokenizer {}{}: {} ids; {} document{}, {} bytes of text -> {} tokens ({:.2f} bytes per "
                         "token) in {:.2f} s on {} thread{}",
                         tok->name(), o.tokenizer == "byte" ? "" : " (" + data.tokenizer_dir + ")", tok->vocab_size(),
                         docs, docs == 1 ? "" : "s", bytes, tokens,
                         tokens ? static_cast<double>(bytes) / static_cast<double>(tokens) : 0.0, s, threads_used,
                         threads_used == 1 ? "" : "s"));
  // Which token marks the documents: a Hugging Face tokenizer's begin-of-text
  // is named by tokenizer_config.json (LLaMA 3's tokenizer.json alone does
  // not), else its end-of-text marks them.
  if (o.tokenizer == "hf" && marker >= 0) {
    std::error_code ec;
    const bool config = fs::is_regular_file(fs::path(data.tokenizer_dir) / "tokenizer_config.json", ec);
    print_line(fmt::format("each document starts with {} (id {}){}", tok->decode({marker}), marker,
                           tok->begin_of_text() >= 0
                               ? ""
                               : fmt::format(": '{}' {}, so the end-of-text token marks the documents",
                                             data.tokenizer_dir,
                                             config ? "has a tokenizer_config.json that names no bos_token"
                                                    : "has no tokenizer_config.json naming a bos_token")));
  }
  print_line(fmt::format("train on them with data.train = \"{}\", data.val = \"{}_val.bin\", data.tokenizer = \"{}\"{}, "
                         "model.vocab_size >= {}",
                         o.shard_tokens > 0 ? o.out + "_train_*.bin" : o.out + "_train.bin", o.out, o.tokenizer,
                         o.tokenizer == "byte" ? "" : ", data.tokenizer_dir = \"" + data.tokenizer_dir + "\"",
                         tok->vocab_size()));
  return kExitOk;
}

}  // namespace

Subcommand add_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Write text as llm.c token files (PREFIX_train.bin, PREFIX_val.bin) with a run's tokenizer: bytes, "
                  "GPT-2's BPE, or a Hugging Face tokenizer.json");
  cmd->add_option("inputs", o->inputs,
                  "UTF-8 text files, each one document (- for standard input), or .jsonl files, each line a JSON "
                  "object whose --text-key string is one document")
      ->required();
  cmd->add_option("--out", o->out, "Output prefix: writes PREFIX_train.bin and PREFIX_val.bin")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "byte (default: one token per UTF-8 byte), gpt2 or hf")
      ->check(CLI::IsMember({"byte", "gpt2", "hf"}));
  cmd->add_option("--tokenizer-dir", o->tokenizer_dir,
                  "gpt2: encoder.json and vocab.bpe (default data/gpt2); hf: tokenizer.json (required)");
  auto* fraction = cmd->add_option("--val-fraction", o->val_fraction,
                                   "The fraction of the tokens, from the end, that becomes the validation split "
                                   "(default 0.1)")
                       ->check(CLI::Validator(
                           [](std::string& text) -> std::string {
                             char* end = nullptr;
                             const double x = std::strtod(text.c_str(), &end);
                             const bool ok = !text.empty() && end == text.c_str() + text.size() && x > 0 && x < 1;
                             return ok ? "" : "expected a fraction between 0 and 1, both excluded (each split "
                                              "needs tokens), got '" + text + "'";
                           },
                           "FRACTION", "fraction"));
  cmd->add_option("--val-tokens", o->val_tokens,
                  "Instead: the first this many tokens (at least 2) are the validation split, and the corpus streams "
                  "through memory (for corpora larger than it); 0, the default: --val-fraction's split")
      ->check(whole_number(0, INT32_MAX - 1))
      ->excludes(fraction);
  cmd->add_option("--shard-tokens", o->shard_tokens,
                  "Write the training split as shards of at most this many tokens (PREFIX_train_NNNNNN.bin; "
                  "0, the default: one file)")
      ->check(whole_number(0, INT32_MAX - 2));
  cmd->add_option("--text-key", o->text_key, "The key of a .jsonl line's text (default \"text\")");
  cmd->add_option("--threads", o->threads,
                  "Threads that encode documents (default: the cores); the files are the same for any number")
      ->check(whole_number(0, 1024));
  cmd->add_flag("--special-tokens", o->special_tokens,
                "Read the spellings of the tokenizer's special tokens in the text (\"<|end_of_text|>\") as those "
                "tokens (default: as text)");
  return {cmd, [o](Context& ctx) { return ctx.world_rank == 0 ? run_tokenize(*o) : kExitOk; }};
}

}  // namespace dtrain_cli
