// `dtrain tokenize TEXT --out PREFIX`: a text file as llm.c token files
// (PREFIX_train.bin, PREFIX_val.bin), with the tokenizer a run will train and
// generate with: the byte tokenizer, GPT-2's BPE, or a Hugging Face
// tokenizer.json (data.tokenizer = "hf": LLaMA 3's, ...). What
// tools/text_to_bin.py does for the byte and GPT-2 tokenizers, with the same
// files for them; ids beyond 65535 are written as LLaMA 3's uint32 files.
//
// Each text file is one document, each line of a .jsonl file (its "text")
// another; every document starts as llm.c's data scripts start one: with the
// tokenizer's begin-of-text id where it has one (LLaMA 3's
// <|begin_of_text|>), else its end-of-text id (GPT-2's <|endoftext|>). The
// spellings of special tokens in the text are tokenized as text unless
// --special-tokens says to read them as the tokens. The documents are
// encoded on all cores; the files do not depend on how many.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
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
  int64_t shard_tokens = 0, threads = 0;
  bool special_tokens = false;
};

constexpr int64_t kMinTokens = 2;  // a token file holds at least one input and its target

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
  dtrain::DataConfig data;
  data.tokenizer = o.tokenizer;
  data.tokenizer_dir = o.tokenizer_dir.empty() ? (o.tokenizer == "gpt2" ? "data/gpt2" : "") : o.tokenizer_dir;
  if (o.tokenizer == "hf" && data.tokenizer_dir.empty())
    throw dtrain::InputError("--tokenizer hf needs --tokenizer-dir: the directory of the tokenizer.json");
  const std::unique_ptr<dtrain::Tokenizer> tok = dtrain::make_tokenizer(data);

  // The documents: each text file whole; each line of a .jsonl file, its
  // --text-key string (llm.c's and the Hub's datasets: one JSON object per
  // document).
  std::vector<std::string> docs;
  std::vector<std::pair<size_t, int64_t>> origin;  // per document: its input, and its line (0: the whole file)
  int64_t bytes = 0;
  for (size_t in = 0; in < o.inputs.size(); ++in) {
    const std::string& input = o.inputs[in];
    std::string text;
    if (input == "-") {
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
      dtrain::require_regular_file(input, "the text to tokenize");
      std::ifstream f(input, std::ios::binary);
      std::ostringstream s;
      if (!f || !(s << f.rdbuf())) throw dtrain::InputError(fmt::format("'{}': cannot read the text to tokenize", input));
      text = std::move(s).str();
    }
    if (!input.ends_with(".jsonl")) {
      bytes += static_cast<int64_t>(text.size());
      docs.push_back(std::move(text));
      origin.emplace_back(in, 0);
      continue;
    }
    std::istringstream lines(text);
    int64_t at = 0;
    for (std::string line; std::getline(lines, line);) {
      ++at;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw dtrain::InputError(fmt::format("'{}': line {}: not JSON: {}", input, at, e.what()));
      }
      if (!j.is_object() || !j.contains(o.text_key) || !j[o.text_key].is_string())
        throw dtrain::InputError(fmt::format("'{}': line {}: expected a JSON object with a string \"{}\" "
                                             "(--text-key), got {}",
                                             input, at, o.text_key, line.substr(0, 80)));
      docs.push_back(j[o.text_key].get<std::string>());
      origin.emplace_back(in, at);
      bytes += static_cast<int64_t>(docs.back().size());
    }
  }
  if (docs.empty()) throw dtrain::InputError("no documents: the inputs hold no text");

  // Each document encoded on its own, starting with the marker; the
  // documents shared out to threads in contiguous runs of about equal bytes,
  // their tokens joined in input order, so the files do not depend on --threads.
  const int32_t marker = tok->begin_of_text() >= 0 ? tok->begin_of_text() : tok->end_of_text();
  const auto specials = o.special_tokens ? dtrain::Tokenizer::Specials::parse : dtrain::Tokenizer::Specials::as_text;
  const size_t n_threads = std::clamp<size_t>(o.threads > 0 ? static_cast<size_t>(o.threads)
                                                            : std::max(1u, std::thread::hardware_concurrency()),
                                              1, docs.size());
  std::vector<size_t> cut{0};
  for (size_t i = 0, t = 1, sum = 0; i < docs.size() && t < n_threads; ++i) {
    sum += docs[i].size();
    if (sum * n_threads >= static_cast<size_t>(bytes) * t) {
      cut.push_back(i + 1);
      ++t;
    }
  }
  cut.push_back(docs.size());
  std::vector<std::vector<int32_t>> parts(cut.size() - 1);
  std::vector<std::string> errors(parts.size());  // per run: its first document that failed, and why
  auto encode_run = [&](size_t p) {
    for (size_t d = cut[p]; d < cut[p + 1]; ++d) {
      if (marker >= 0) parts[p].push_back(marker);
      try {
        const std::vector<int32_t> ids = tok->encode(docs[d], specials);
        parts[p].insert(parts[p].end(), ids.begin(), ids.end());
      } catch (const dtrain::InputError& e) {
        const auto [in, line] = origin[d];
        errors[p] = fmt::format("'{}'{}: {}", o.inputs[in], line ? fmt::format(": line {}", line) : "", e.what());
        return;
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
  std::vector<int32_t> tokens;
  for (const auto& part : parts) tokens.insert(tokens.end(), part.begin(), part.end());

  const auto n = static_cast<int64_t>(tokens.size());
  const auto n_val = static_cast<int64_t>(static_cast<double>(n) * o.val_fraction);
  const std::span<const int32_t> all(tokens);
  const std::span<const int32_t> train = all.first(static_cast<size_t>(n - n_val)), val = all.last(static_cast<size_t>(n_val));
  for (const auto& [name, split] : {std::pair{"train", train}, std::pair{"val", val}})
    if (static_cast<int64_t>(split.size()) < kMinTokens)
      throw dtrain::InputError(fmt::format("'{}': the {} split would have {} token(s), a token file needs at least "
                                           "{}: use a longer text or another --val-fraction",
                                           o.inputs.front(), name, split.size(), kMinTokens));
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  std::vector<std::pair<std::string, std::span<const int32_t>>> files;
  if (o.shard_tokens > 0) {
    const auto k = static_cast<size_t>(o.shard_tokens);
    for (size_t at = 0, i = 0; at < train.size(); ++i) {
      size_t len = std::min(k, train.size() - at);
      if (train.size() - at - len < static_cast<size_t>(kMinTokens)) len = train.size() - at;  // a lone tail joins
      files.emplace_back(fmt::format("{}_train_{:06d}.bin", o.out, i), train.subspan(at, len));
      at += len;
    }
  } else {
    files.emplace_back(o.out + "_train.bin", train);
  }
  files.emplace_back(o.out + "_val.bin", val);
  int32_t top = 0;
  for (int32_t id : tokens) top = std::max(top, id);
  for (const auto& [path, split] : files) {
    dtrain::write_token_file(path, split);
    print_line(fmt::format("wrote {}: {} tokens ({})", path, split.size(), top > 0xFFFF ? "uint32" : "uint16"));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print_line(fmt::format("tokenizer {}{}: {} ids; {} document{}, {} bytes of text -> {} tokens ({:.2f} bytes per "
                         "token) in {:.2f} s on {} thread{}",
                         tok->name(), o.tokenizer == "byte" ? "" : " (" + data.tokenizer_dir + ")", tok->vocab_size(),
                         docs.size(), docs.size() == 1 ? "" : "s", bytes, n,
                         n ? static_cast<double>(bytes) / static_cast<double>(n) : 0.0, s, parts.size(),
                         parts.size() == 1 ? "" : "s"));
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
      "tokenize", "Write a text file as llm.c token files (PREFIX_train.bin, PREFIX_val.bin) with a run's "
                  "tokenizer: bytes, GPT-2's BPE, or a Hugging Face tokenizer.json");
  cmd->add_option("inputs", o->inputs,
                  "UTF-8 text files, each one document (- for standard input), or .jsonl files, each line a JSON "
                  "object whose --text-key string is one document")
      ->required();
  cmd->add_option("--out", o->out, "Output prefix: writes PREFIX_train.bin and PREFIX_val.bin")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "byte (default: one token per UTF-8 byte), gpt2 or hf")
      ->check(CLI::IsMember({"byte", "gpt2", "hf"}));
  cmd->add_option("--tokenizer-dir", o->tokenizer_dir,
                  "gpt2: encoder.json and vocab.bpe (default data/gpt2); hf: tokenizer.json (required)");
  cmd->add_option("--val-fraction", o->val_fraction,
                  "The fraction of the tokens, from the end, that becomes the validation split (default 0.1)")
      ->check(number_in(1e-9, 1 - 1e-9));
  cmd->add_option("--shard-tokens", o->shard_tokens,
                  "Write the training split as shards of at most this many tokens (PREFIX_train_NNNNNN.bin; "
                  "0, the default: one file)")
      ->check(whole_number(0, INT32_MAX));
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
