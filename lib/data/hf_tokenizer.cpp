// Hugging Face tokenizer.json files of byte-level BPE tokenizers: LLaMA 3's,
// GPT-2's, and the others built the same way (Qwen 2, SmolLM, StarCoder),
// read and run as the Rust `tokenizers` crate runs them:
//
//   added tokens split out of the text (leftmost, longest first)
//   -> the normalizer (none, Qwen 2's NFC, or SentencePiece's Prepend / Replace)
//   -> the pre-tokenizer's steps, each splitting every piece
//      (Split on a known regex, Digits, ByteLevel: GPT-2's regex and the
//      byte-to-character map)
//   -> BPE on each piece (the merges of lowest rank first, leftmost among
//      equals; `ignore_merges`; `byte_fallback`; `unk_token`)
//
// A component or setting this does not run is refused by name when the file
// is read, never approximated. The regexes are matched by hand: the few
// patterns tokenizers use (GPT-2's, and the cl100k-style one of LLaMA 3 with
// up to three digits or Qwen 2 with one) are recognised by their exact text.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <queue>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_kind.h"
#include "data/tokenizer.h"
#include "data/unicode.h"

namespace dtrain {

namespace {

using nlohmann::json;
using text::is_letter;
using text::is_number;
bool is_space(char32_t c) { return text::is_unicode_space(c); }
bool is_crlf(char32_t c) { return c == '\r' || c == '\n'; }
bool is_other(char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

// The regexes of Split and ByteLevel pre-tokenizers, by their exact text.
constexpr const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Regex {
  enum Kind { gpt2, cl100k } kind = gpt2;
  int max_digits = 0;  // cl100k: \p{N}{1,max_digits}
};

// The end of the contraction 's 't 're 've 'm 'll 'd at t[i] (an apostrophe),
// or i; `fold`: case-insensitive, as (?i:...) (the only fold beyond ASCII's
// for these letters is U+017F to s).
size_t contraction_end(const char32_t* t, size_t n, size_t i, bool fold) {
  static const std::u32string kTails[] = {U"s", U"t", U"re", U"ve", U"m", U"ll", U"d"};
  for (const std::u32string& tail : kTails) {
    if (i + 1 + tail.size() > n) continue;
    bool same = true;
    for (size_t k = 0; k < tail.size() && same; ++k) {
      char32_t c = t[i + 1 + k];
      if (fold && c >= 'A' && c <= 'Z') c += 'a' - 'A';
      if (fold && c == 0x17F) c = 's';  // Oniguruma folds the long s (U+017F) to s
      same = c == tail[k];
    }
    if (same) return i + 1 + tail.size();
  }
  return i;
}

// The end of the whitespace alternatives \s+(?!\S)|\s+ at t[i] (a space).
size_t space_end(const char32_t* t, size_t n, size_t i) {
  size_t k = i;
  while (k < n && is_space(t[k])) ++k;
  return k < n && k - i > 1 ? k - 1 : k;  // the last space goes with what follows
}

// The end of the regex's match at t[i]. Every character starts a match of
// these patterns, so a text splits into consecutive matches.
size_t match_end(const Regex& re, const char32_t* t, size_t n, size_t i) {
  auto run = [&](size_t k, bool (*cls)(char32_t)) {
    while (k < n && cls(t[k])) ++k;
    return k;
  };
  const char32_t c = t[i];
  if (re.kind == Regex::gpt2) {
    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    if (c == '\'')
      if (size_t e = contraction_end(t, n, i, false); e > i) return e;
    for (bool (*cls)(char32_t) : {is_letter, is_number, is_other}) {
      const size_t j = c == ' ' && i + 1 < n && cls(t[i + 1]) ? i + 1 : i;
      if (cls(t[j])) return run(j, cls);
    }
    return space_end(t, n, i);
  }
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c == '\'')
    if (size_t e = contraction_end(t, n, i, true); e > i) return e;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (is_letter(c)) return run(i, is_letter);
  if (!is_crlf(c) && !is_number(c) && i + 1 < n && is_letter(t[i + 1])) return run(i + 1, is_letter);
  // \p{N}{1,max_digits}
  if (is_number(c)) {
    size_t k = i;
    while (k < n && k - i < static_cast<size_t>(re.max_digits) && is_number(t[k])) ++k;
    return k;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  if (const size_t j = c == ' ' && i + 1 < n && is_other(t[i + 1]) ? i + 1 : i; is_other(t[j]))
    return run(run(j, is_other), is_crlf);
  // \s*[\r\n]+ : up to the run's last line break
  const size_t k = run(i, is_space);
  for (size_t j = k; j > i; --j)
    if (is_crlf(t[j - 1])) return j;
  // \s+(?!\S)|\s+
  return space_end(t, n, i);
}

// One pre-tokenizer step. Each splits a piece of text into pieces.
struct PreStep {
  enum Kind { split, digits, byte_level, metaspace } kind = split;
  Regex regex;                     // split; byte_level with use_regex
  bool use_regex = true;           // byte_level
  bool add_prefix_space = false;   // byte_level
  bool individual_digits = false;  // digits
  // metaspace: spaces become `replacement`, which goes in front of a piece
  // (prepend_scheme "always"; "first": only of the text's first piece, at
  // offset 0 of the input), then each replacement starts a piece (split).
  std::string replacement;
  enum Prepend { always, first, never } prepend = always;
  bool split_pieces = true;
};

// Splits `piece` by `step` into `out`; `at_start`: the piece begins the input
// (offset 0), which Metaspace's "first" scheme asks.
void apply(const PreStep& step, const std::string& piece, bool at_start, std::vector<std::string>& out) {
  std::string s = piece;
  if (step.kind == PreStep::metaspace) {
    std::string r;
    for (size_t i = 0;;) {  // every ' ' becomes the replacement
      const size_t sp = s.find(' ', i);
      r.append(s, i, sp == std::string::npos ? std::string::npos : sp - i);
      if (sp == std::string::npos) break;
      r += step.replacement;
      i = sp + 1;
    }
    const bool prepend = step.prepend == PreStep::always || (step.prepend == PreStep::first && at_start);
    if (prepend && r.compare(0, step.replacement.size(), step.replacement) != 0) r.insert(0, step.replacement);
    if (!step.split_pieces) {
      out.push_back(std::move(r));
      return;
    }
    // MergedWithNext: each replacement starts a piece.
    size_t begin = 0;
    for (size_t at = r.find(step.replacement, 1); at != std::string::npos; at = r.find(step.replacement, at + 1)) {
      if (at > begin) out.push_back(r.substr(begin, at - begin));
      begin = at;
    }
    if (begin < r.size()) out.push_back(r.substr(begin));
    return;
  }
  if (step.kind == PreStep::byte_level && step.add_prefix_space && (s.empty() || s[0] != ' ')) s.insert(0, 1, ' ');
  if (step.kind == PreStep::byte_level && !step.use_regex) {
    out.push_back(std::move(s));
    return;
  }
  const std::vector<char32_t> t = text::utf8_decode(s);
  const size_t n = t.size();
  for (size_t i = 0; i < n;) {
    size_t e;
    if (step.kind == PreStep::digits) {
      e = i + 1;
      if (!is_number(t[i])) {
        while (e < n && !is_number(t[e])) ++e;
      } else if (!step.individual_digits) {
        while (e < n && is_number(t[e])) ++e;
      }
    } else {
      e = match_end(step.regex, t.data(), n, i);
    }
    out.push_back(text::utf8_encode(t.data() + i, t.data() + e));
    i = e;
  }
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest
// for 256 + n.
struct ByteMap {
  std::string symbol[256];  // byte -> its character, UTF-8
  std::unordered_map<char32_t, unsigned char> byte_of;
  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      text::utf8_append(symbol[b], c);
      byte_of[c] = static_cast<unsigned char>(b);
    }
  }
};

// Ids below this (the largest vocabularies hold about 260k): a file naming id
// 2^31 - 2 is refused, not answered with an 8 GiB table.
constexpr int64_t kMaxIds = int64_t{1} << 21;
// Sequences of normalizers, pre-tokenizers or decoders nested deeper are
// refused (real files nest one level).
constexpr int kMaxNesting = 8;

// A JSON value for a message: its text, cut short; a value nested deeper
// than a few levels is described, not printed (dump() recurses).
std::string shown(const json& j) {
  std::vector<std::pair<const json*, int>> todo{{&j, 0}};
  for (size_t seen = 0; !todo.empty(); ++seen) {
    const auto [v, depth] = todo.back();
    todo.pop_back();
    if (depth > 16) return std::string("(a JSON ") + j.type_name() + " nested too deep to show)";
    if (seen == 4096)  // too large to look through (nor to show): not dumped, which could recurse deep
      return std::string("(a JSON ") + j.type_name() + " of " + std::to_string(j.size()) + " elements)";
    if (v->is_structured())
      for (const json& e : *v) todo.emplace_back(&e, depth + 1);
  }
  const std::string text = j.dump();
  return text.size() > 160 ? text.substr(0, 157) + "..." : text;
}

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool lstrip = false, rstrip = false, special = false, normalized = false;
};

// The text between added tokens, or one of them (id >= 0); `offset` in the
// text it was cut from.
struct Segment {
  std::string text;
  int32_t id = -1;
  size_t offset = 0;
};

class HfTokenizer : public Tokenizer {
 public:
  explicit HfTokenizer(const std::string& dir);

  std::string name() const override { return "hf"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(token_of_.size()); }
  int32_t end_of_text() const override { return eos_; }
  int32_t begin_of_text() const override { return bos_; }
  int32_t document_start() const override { return bos_ >= 0 ? bos_ : endoftext_ >= 0 ? endoftext_ : eos_; }
  std::vector<int32_t> encode(const std::string& utf8, Specials specials) const override {
    std::unordered_map<std::string, std::vector<int32_t>> cache;
    return encode_cached(utf8, specials, cache);
  }
  std::vector<std::vector<int32_t>> encode_documents(std::span<const std::string> docs,
                                                     Specials specials) const override {
    std::unordered_map<std::string, std::vector<int32_t>> cache;  // the documents share their words
    std::vector<std::vector<int32_t>> out;
    out.reserve(docs.size());
    for (size_t d = 0; d < docs.size(); ++d) {
      try {
        out.push_back(encode_cached(docs[d], specials, cache));
      } catch (const InputError& e) {
        throw InputError(fmt::format("document {}: {}", d, e.what()));
      }
    }
    return out;
  }
  std::string decode(const std::vector<int32_t>& ids, Position at) const override;

 private:
  // The ids of each piece BPE'd so far (a corpus repeats its words).
  using Cache = std::unordered_map<std::string, std::vector<int32_t>>;
  std::vector<int32_t> encode_cached(const std::string& s, Specials specials, Cache& cache) const;
  // `s` cut at the added tokens of `bucket` (leftmost, longest first; their
  // lstrip and rstrip take the spaces beside them); special ones are left in
  // the text when `as_text`.
  std::vector<Segment> split_added(const std::string& s, const std::vector<std::vector<const AddedToken*>>& bucket,
                                   bool as_text) const;
  std::string normalize(const std::string& s) const;
  // Pre-tokenized and BPE'd; `at_start`: `s` begins the input.
  void encode_text(const std::string& s, bool at_start, std::unordered_map<std::string, std::vector<int32_t>>& cache,
                   std::vector<int32_t>& ids) const;
  void bpe(const std::string& piece, std::vector<int32_t>& ids) const;
  [[noreturn]] void refuse(const std::string& key, const std::string& what) const;
  void read_normalizer(const json& j, const std::string& key, int depth);
  void read_pre_tokenizer(const json& j, const std::string& key, int depth);
  void read_decoder(const json& j, const std::string& key, int depth);
  // A Metaspace's prepend_scheme (tokenizers >= 0.19), or its add_prefix_space before it.
  PreStep::Prepend prepend_scheme(const json& j, const std::string& key) const;
  void read_model(const json& m);
  void read_added(const json& root);
  void read_markers(const json& root, const std::string& dir);

  std::string path_;
  struct Normalize {
    enum Kind { prepend, replace, nfc } kind = nfc;
    std::string text, with;  // Prepend(text), Replace(text -> with)
  };
  std::vector<Normalize> normalizer_;  // in the file's order
  std::vector<PreStep> pre_;
  bool byte_level_ = false;  // pieces go through the byte map before BPE
  struct Decode {
    enum Kind { byte_level, replace, byte_fallback, fuse, strip, metaspace } kind = fuse;
    std::string text, with;   // replace: text -> with; strip: the character; metaspace: its replacement
    int start = 0, stop = 0;  // strip: up to this many from each token's start and end; metaspace: 1 = drop
                              // the first token's replacements (a prepend scheme other than "never")
  };
  std::vector<Decode> decoder_;  // in the file's order
  ByteMap bytes_;
  // The model's vocabulary (all that BPE sees), and every id's text (the
  // added tokens' included).
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> token_of_;
  struct Merge {
    int32_t rank, id;
  };
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank and merged id
  bool ignore_merges_ = false, byte_fallback_ = false, fuse_unk_ = false;
  int32_t unk_ = -1;
  int32_t byte_token_[256];  // byte_fallback: <0xXX>
  std::vector<AddedToken> added_;
  // The added tokens matched on the raw text and on the normalized text
  // (`normalized`), by first byte, longest first.
  std::vector<std::vector<const AddedToken*>> raw_bucket_, norm_bucket_;
  std::vector<std::string> norm_content_;  // per added token: its content normalized
  int32_t bos_ = -1, eos_ = -1, endoftext_ = -1;
};

void HfTokenizer::refuse(const std::string& key, const std::string& what) const {
  throw InputError(fmt::format("'{}': {}: {}", path_, key, what));
}

HfTokenizer::HfTokenizer(const std::string& dir) {
  path_ = (std::filesystem::path(dir) / "tokenizer.json").string();
  require_regular_file(path_, "a Hugging Face tokenizer (tokenizer.json)");
  std::ifstream f(path_);
  if (!f) throw InputError(fmt::format("'{}': cannot open (a Hugging Face tokenizer)", path_));
  json root;
  try {
    root = json::parse(f);
  } catch (const json::exception& e) {
    throw InputError(fmt::format("'{}': not JSON: {}", path_, e.what()));
  }
  if (!root.is_object()) refuse("(top level)", "expected a JSON object");
  // Each part read with its key named in a JSON type error.
  auto part = [&](const char* key, const auto& read) {
    try {
      read();
    } catch (const json::exception& e) {
      refuse(key, fmt::format("unexpected JSON: {}", e.what()));
    }
  };
  part("model", [&] {
    if (!root.contains("model") || !root["model"].is_object()) refuse("model", "missing (expected a BPE model)");
    read_model(root["model"]);
  });
  part("normalizer", [&] { read_normalizer(root.value("normalizer", json()), "normalizer", 0); });
  part("pre_tokenizer", [&] { read_pre_tokenizer(root.value("pre_tokenizer", json()), "pre_tokenizer", 0); });
  part("decoder", [&] { read_decoder(root.value("decoder", json()), "decoder", 0); });
  const bool decodes_bytes =
      std::any_of(decoder_.begin(), decoder_.end(), [](const Decode& d) { return d.kind == Decode::byte_level; });
  if (byte_level_ != decodes_bytes)
    refuse("decoder", byte_level_ ? "the pre-tokenizer is ByteLevel but the decoder is not"
                                  : "the decoder is ByteLevel but the pre-tokenizer is not");
  part("added_tokens", [&] { read_added(root); });
  part("post_processor", [&] { read_markers(root, dir); });
}

void HfTokenizer::read_model(const json& m) {
  if (m.value("type", "BPE") != "BPE")
    refuse("model.type", fmt::format("\"{}\" is not supported (expected \"BPE\")", m.value("type", "")));
  if (!m.value("dropout", json()).is_null() && m["dropout"].get<double>() != 0)
    refuse("model.dropout", "BPE dropout is for training a tokenizer; expected null");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && !m[key].is_null() && !m[key].get<std::string>().empty())
      refuse(std::string("model.") + key, fmt::format("\"{}\" is not supported", m[key].get<std::string>()));
  ignore_merges_ = m.value("ignore_merges", false);
  byte_fallback_ = m.value("byte_fallback", false);
  fuse_unk_ = m.value("fuse_unk", false);
  if (!m.contains("vocab") || !m["vocab"].is_object()) refuse("model.vocab", "expected an object of token ids");
  for (const auto& [tok, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxIds)
      refuse("model.vocab", fmt::format("token '{}': expected an id from 0 to {}, got {}", tok, kMaxIds - 1, shown(id)));
    const auto v = id.get<int32_t>();
    if (static_cast<size_t>(v) >= token_of_.size()) token_of_.resize(static_cast<size_t>(v) + 1);
    token_of_[static_cast<size_t>(v)] = tok;
    vocab_[tok] = v;
  }
  if (m.contains("unk_token") && !m["unk_token"].is_null()) {
    const auto it = vocab_.find(m["unk_token"].get<std::string>());
    if (it == vocab_.end())
      refuse("model.unk_token", fmt::format("'{}' is not in the vocabulary", m["unk_token"].get<std::string>()));
    unk_ = it->second;
  }
  std::fill(std::begin(byte_token_), std::end(byte_token_), -1);
  if (byte_fallback_)
    for (int b = 0; b < 256; ++b)
      if (auto it = vocab_.find(fmt::format("<0x{:02X}>", b)); it != vocab_.end()) byte_token_[b] = it->second;
  if (!m.contains("merges") || !m["merges"].is_array()) refuse("model.merges", "expected an array");
  int32_t rank = 0;
  for (const json& mg : m["merges"]) {
    std::string a, b;
    if (mg.is_string()) {  // "a b"
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        refuse("model.merges", fmt::format("merge {}: expected \"a b\", got \"{}\"", rank + 1, s));
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {  // ["a", "b"]
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      refuse("model.merges", fmt::format("merge {}: expected \"a b\" or [\"a\", \"b\"], got {}", rank + 1, shown(mg)));
    }
    const auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || iab == vocab_.end())
      refuse("model.merges", fmt::format("merge {} ('{}' '{}'): '{}' is not in the vocabulary", rank + 1, a, b,
                                         ia == vocab_.end() ? a : ib == vocab_.end() ? b : a + b));
    const uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    merges_.insert_or_assign(key, Merge{rank, iab->second});  // a repeated pair: its last rank, as the crate's map
    ++rank;
  }
}

void HfTokenizer::read_normalizer(const json& j, const std::string& key, int depth) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    if (depth >= kMaxNesting) refuse(key, fmt::format("Sequences nested deeper than {}", kMaxNesting));
    for (size_t i = 0; i < j.at("normalizers").size(); ++i)
      read_normalizer(j["normalizers"][i], fmt::format("{}.normalizers[{}]", key, i), depth + 1);
  } else if (type == "Prepend") {
    normalizer_.push_back({Normalize::prepend, j.at("prepend").get<std::string>(), ""});
  } else if (type == "Replace" && j.at("pattern").contains("String")) {
    const std::string from = j["pattern"]["String"].get<std::string>();
    if (from.empty()) refuse(key + ".pattern", "an empty string");
    normalizer_.push_back({Normalize::replace, from, j.at("content").get<std::string>()});
  } else if (type == "NFC") {
    normalizer_.push_back({Normalize::nfc, "", ""});
  } else {
    refuse(key, fmt::format("{} is not supported (expected none, NFC, or Prepend and Replace of a string)", shown(j)));
  }
}

PreStep::Prepend HfTokenizer::prepend_scheme(const json& j, const std::string& key) const {
  const std::string scheme = j.contains("prepend_scheme") ? j["prepend_scheme"].get<std::string>()
                                                          : (j.value("add_prefix_space", true) ? "always" : "never");
  if (scheme != "always" && scheme != "first" && scheme != "never")
    refuse(key + ".prepend_scheme", fmt::format("\"{}\": expected \"always\", \"first\" or \"never\"", scheme));
  return scheme == "always" ? PreStep::always : scheme == "first" ? PreStep::first : PreStep::never;
}

void HfTokenizer::read_pre_tokenizer(const json& j, const std::string& key, int depth) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    if (depth >= kMaxNesting) refuse(key, fmt::format("Sequences nested deeper than {}", kMaxNesting));
    for (size_t i = 0; i < j.at("pretokenizers").size(); ++i)
      read_pre_tokenizer(j["pretokenizers"][i], fmt::format("{}.pretokenizers[{}]", key, i), depth + 1);
    return;
  }
  if (byte_level_) refuse(key, "a step after ByteLevel is not supported");
  PreStep step;
  if (type == "ByteLevel") {
    step.kind = PreStep::byte_level;
    step.use_regex = j.value("use_regex", true);
    step.add_prefix_space = j.value("add_prefix_space", false);
    byte_level_ = true;
  } else if (type == "Digits") {
    step.kind = PreStep::digits;
    step.individual_digits = j.value("individual_digits", false);
  } else if (type == "Metaspace") {
    step.kind = PreStep::metaspace;
    step.replacement = j.value("replacement", std::string("\u2581"));
    if (text::utf8_decode(step.replacement).size() != 1) refuse(key + ".replacement", "expected one character");
    step.prepend = prepend_scheme(j, key);
    step.split_pieces = j.value("split", true);
  } else if (type == "Split") {
    const json& p = j.at("pattern");
    const std::string re = p.contains("Regex") && p["Regex"].is_string() ? p["Regex"].get<std::string>() : "";
    if (re == kGpt2Regex) {
      step.regex = {Regex::gpt2, 0};
    } else if (re == kLlama3Regex) {
      step.regex = {Regex::cl100k, 3};
    } else if (re == kQwen2Regex) {
      step.regex = {Regex::cl100k, 1};
    } else {
      refuse(key + ".pattern",
             fmt::format("{} is not a pattern this tokenizer runs (GPT-2's, LLaMA 3's or Qwen 2's regex)", shown(p)));
    }
    if (j.value("behavior", "") != "Isolated" || j.value("invert", false))
      refuse(key, fmt::format("behavior \"{}\", invert {}: expected \"Isolated\", false", j.value("behavior", ""),
                              j.value("invert", false)));
  } else {
    refuse(key, fmt::format("{} is not supported (expected ByteLevel, Split, Digits, Metaspace or a Sequence of them)",
                            shown(j)));
  }
  pre_.push_back(step);
}

void HfTokenizer::read_decoder(const json& j, const std::string& key, int depth) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  Decode d;
  if (type == "Sequence") {
    if (depth >= kMaxNesting) refuse(key, fmt::format("Sequences nested deeper than {}", kMaxNesting));
    for (size_t i = 0; i < j.at("decoders").size(); ++i)
      read_decoder(j["decoders"][i], fmt::format("{}.decoders[{}]", key, i), depth + 1);
    return;
  } else if (type == "ByteLevel") {
    d.kind = Decode::byte_level;
  } else if (type == "Replace" && j.at("pattern").contains("String")) {
    d = {Decode::replace, j["pattern"]["String"].get<std::string>(), j.at("content").get<std::string>()};
    if (d.text.empty()) refuse(key + ".pattern", "an empty string");
  } else if (type == "Metaspace") {
    d = {Decode::metaspace, j.value("replacement", std::string("\u2581")), " "};
    if (text::utf8_decode(d.text).size() != 1) refuse(key + ".replacement", "expected one character");
    d.start = prepend_scheme(j, key) != PreStep::never;
  } else if (type == "ByteFallback") {
    d.kind = Decode::byte_fallback;
  } else if (type == "Fuse") {
    d.kind = Decode::fuse;
  } else if (type == "Strip") {
    d = {Decode::strip, j.at("content").get<std::string>(), "", j.value("start", 0), j.value("stop", 0)};
    if (text::utf8_decode(d.text).size() != 1 || d.start < 0 || d.stop < 0)
      refuse(key, fmt::format("{}: expected one character and counts from 0", shown(j)));
  } else {
    refuse(key, fmt::format("{} is not supported (expected ByteLevel, Metaspace, Replace of a string, ByteFallback, "
                            "Fuse, Strip or a Sequence of them)",
                            shown(j)));
  }
  decoder_.push_back(std::move(d));
}

// The crate's AddedVocabulary::add_tokens, one token at a time in the file's
// order: a token the vocabulary (or an earlier added token) holds takes that
// id; another the next after the largest added id, or the vocabulary's size
// (its entries) for the first. Files the crate wrote give each token the id
// they say.
void HfTokenizer::read_added(const json& root) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
  const auto model_size = static_cast<int64_t>(vocab_.size());
  std::unordered_map<std::string, int32_t> added_id;
  int64_t max_added = -1;
  for (const json& t : root.at("added_tokens")) {
    AddedToken a{t.at("content").get<std::string>(), 0, t.value("lstrip", false), t.value("rstrip", false),
                 t.value("special", false), t.value("normalized", !t.value("special", false))};
    if (a.content.empty()) continue;  // the crate ignores it
    if (t.value("single_word", false))
      refuse("added_tokens", fmt::format("'{}': single_word is not supported", a.content));
    int64_t id;
    if (auto it = added_id.find(a.content); it != added_id.end()) {
      id = it->second;
    } else if (auto v = vocab_.find(a.content); v != vocab_.end()) {
      id = v->second;
    } else {
      id = max_added < 0 ? model_size : max_added >= model_size || model_size == 0 ? max_added + 1 : model_size;
    }
    if (id >= kMaxIds) refuse("added_tokens", fmt::format("'{}': id {} is beyond {}", a.content, id, kMaxIds - 1));
    a.id = static_cast<int32_t>(id);
    max_added = std::max(max_added, id);
    added_id[a.content] = a.id;
    if (static_cast<size_t>(a.id) >= token_of_.size()) token_of_.resize(static_cast<size_t>(a.id) + 1);
    token_of_[static_cast<size_t>(a.id)] = a.content;
    auto same = std::find_if(added_.begin(), added_.end(), [&](const AddedToken& x) { return x.content == a.content; });
    if (same != added_.end()) {
      *same = a;  // a later entry of the same content replaces the earlier
    } else {
      added_.push_back(a);
    }
  }
  raw_bucket_.assign(256, {});
  norm_bucket_.assign(256, {});
  norm_content_.resize(added_.size());
  for (size_t i = 0; i < added_.size(); ++i) {
    const AddedToken& a = added_[i];
    // A normalized token is looked for in normalized text, as its content normalizes.
    norm_content_[i] = a.normalized && !normalizer_.empty() ? normalize(a.content) : a.content;
    if (norm_content_[i].empty()) continue;
    auto& bucket = a.normalized ? norm_bucket_ : raw_bucket_;
    bucket[static_cast<unsigned char>(norm_content_[i][0])].push_back(&a);
  }
  auto content_of = [&](const AddedToken* a) -> const std::string& {
    return norm_content_[static_cast<size_t>(a - added_.data())];
  };
  for (auto* buckets : {&raw_bucket_, &norm_bucket_})
    for (auto& b : *buckets)
      std::stable_sort(b.begin(), b.end(), [&](const AddedToken* x, const AddedToken* y) {
        return content_of(x).size() > content_of(y).size();
      });
}

// The document markers: tokenizer_config.json's bos_token and eos_token (a
// string, or an object with its content), else the template's first special
// token and the usual end-of-text names; and <|endoftext|>, which starts
// documents in data where there is no begin-of-text token (GPT-2's, Qwen's).
void HfTokenizer::read_markers(const json& root, const std::string& dir) {
  auto id_named = [&](const json& v) -> int32_t {
    const json c = v.is_object() ? v.value("content", json()) : v;
    if (!c.is_string()) return -1;
    const std::string name = c.get<std::string>();
    for (const AddedToken& a : added_)
      if (a.content == name) return a.id;
    const auto it = vocab_.find(name);
    return it == vocab_.end() ? -1 : it->second;
  };
  const std::filesystem::path cfg_path = std::filesystem::path(dir) / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(cfg_path, ec)) {
    std::ifstream cf(cfg_path);
    json cfg;
    try {
      cfg = json::parse(cf);
    } catch (const json::exception& e) {
      throw InputError(fmt::format("'{}': not JSON: {}", cfg_path.string(), e.what()));
    }
    if (cfg.is_object()) {
      bos_ = id_named(cfg.value("bos_token", json()));
      eos_ = id_named(cfg.value("eos_token", json()));
    }
  }
  const json post = root.value("post_processor", json());
  if (bos_ < 0 && post.is_object() && post.value("type", "") == "TemplateProcessing" && post.contains("single") &&
      post["single"].is_array() && !post["single"].empty() && post["single"][0].contains("SpecialToken"))
    bos_ = id_named(post["single"][0]["SpecialToken"].value("id", json()));
  endoftext_ = id_named(json("<|endoftext|>"));
  for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>"})
    if (eos_ < 0) eos_ = id_named(json(name));
}

std::vector<Segment> HfTokenizer::split_added(const std::string& s,
                                              const std::vector<std::vector<const AddedToken*>>& bucket,
                                              bool as_text) const {
  std::vector<Segment> out;
  if (bucket.empty()) {
    out.push_back({s, -1, 0});
    return out;
  }
  // The spaces (Unicode White_Space) just before `end` down to `floor`, and
  // just after `begin`.
  auto spaces_before = [&](size_t end, size_t floor) {
    while (end > floor) {
      size_t b = end - 1;
      while (b > floor && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
      const std::vector<char32_t> c = text::utf8_decode(s.substr(b, end - b));
      if (c.size() != 1 || !is_space(c[0])) break;
      end = b;
    }
    return end;
  };
  auto spaces_after = [&](size_t begin) {
    while (begin < s.size()) {
      const auto lead = static_cast<unsigned char>(s[begin]);
      const size_t n = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
      const std::vector<char32_t> c = text::utf8_decode(s.substr(begin, n));
      if (c.size() != 1 || !is_space(c[0])) break;
      begin += n;
    }
    return begin;
  };
  size_t from = 0;  // the text not yet cut off starts here
  for (size_t i = 0; i < s.size();) {
    const AddedToken* hit = nullptr;
    for (const AddedToken* a : bucket[static_cast<unsigned char>(s[i])]) {  // longest first
      if (as_text && a->special) continue;
      const std::string& c = norm_content_[static_cast<size_t>(a - added_.data())];
      if (s.compare(i, c.size(), c) == 0) {
        hit = a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    const std::string& c = norm_content_[static_cast<size_t>(hit - added_.data())];
    size_t begin = i, end = i + c.size();
    if (hit->lstrip) begin = spaces_before(begin, from);
    if (hit->rstrip) end = spaces_after(end);
    if (begin > from) out.push_back({s.substr(from, begin - from), -1, from});
    out.push_back({"", hit->id, begin});
    from = i = end;
  }
  if (from < s.size()) out.push_back({s.substr(from), -1, from});
  return out;
}

std::string HfTokenizer::normalize(const std::string& s) const {
  std::string norm = s;
  for (const Normalize& n : normalizer_) {
    if (n.kind == Normalize::prepend) {
      if (!norm.empty()) norm.insert(0, n.text);  // the crate prepends to no empty text
      continue;
    }
    if (n.kind == Normalize::nfc) {
      norm = text::nfc(norm);
      continue;
    }
    std::string out;
    for (size_t i = 0; i < norm.size();) {
      const size_t at = norm.find(n.text, i);
      out.append(norm, i, at == std::string::npos ? std::string::npos : at - i);
      if (at == std::string::npos) break;
      out += n.with;
      i = at + n.text.size();
    }
    norm.swap(out);
  }
  return norm;
}

// The crate's encode: the added tokens cut out of the raw text; each piece
// between them normalized, and the normalized added tokens cut out of it;
// what remains pre-tokenized and BPE'd.
std::vector<int32_t> HfTokenizer::encode_cached(const std::string& s, Specials specials, Cache& cache) const {
  text::utf8_decode(s);  // refuses text that is not UTF-8, naming the offset in it
  const bool as_text = specials == Specials::as_text;
  std::vector<int32_t> ids;
  for (const Segment& raw : split_added(s, raw_bucket_, as_text)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    for (const Segment& seg : split_added(normalize(raw.text), norm_bucket_, as_text)) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
      } else {
        encode_text(seg.text, raw.offset == 0 && seg.offset == 0, cache, ids);
      }
    }
  }
  return ids;
}

void HfTokenizer::encode_text(const std::string& s, bool at_start,
                              std::unordered_map<std::string, std::vector<int32_t>>& cache,
                              std::vector<int32_t>& ids) const {
  if (s.empty()) return;
  std::vector<std::string> pieces{s}, next;
  for (const PreStep& step : pre_) {
    next.clear();
    for (size_t i = 0; i < pieces.size(); ++i) apply(step, pieces[i], at_start && i == 0, next);
    pieces.swap(next);
  }
  for (const std::string& p : pieces) {
    if (p.empty()) continue;
    auto it = cache.find(p);
    if (it == cache.end()) {
      std::vector<int32_t> word;
      if (byte_level_) {
        std::string mapped;
        for (unsigned char c : p) mapped += bytes_.symbol[c];
        bpe(mapped, word);
      } else {
        bpe(p, word);
      }
      it = cache.emplace(p, std::move(word)).first;
    }
    ids.insert(ids.end(), it->second.begin(), it->second.end());
  }
}

// The crate's Word::merge_all: a heap of (rank, position) of the adjacent
// pairs that merge; the lowest rank first, the leftmost among equal ranks; a
// popped pair no longer there (a neighbour merged first) is skipped. The
// model's vocabulary only: added tokens are not BPE's.
void HfTokenizer::bpe(const std::string& piece, std::vector<int32_t>& ids) const {
  if (ignore_merges_)
    if (auto it = vocab_.find(piece); it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  struct Symbol {
    int32_t id;
    int64_t prev, next;  // -1: none
    bool live;
  };
  std::vector<Symbol> sym;
  auto push = [&](int32_t id) {
    const auto at = static_cast<int64_t>(sym.size());
    sym.push_back({id, at - 1, -1, true});
    if (at > 0) sym[static_cast<size_t>(at - 1)].next = at;
  };
  for (char32_t c : text::utf8_decode(piece)) {
    std::string ch;
    text::utf8_append(ch, c);
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      push(it->second);
      continue;
    }
    bool fell_back = byte_fallback_;
    for (unsigned char b : ch) fell_back = fell_back && byte_token_[b] >= 0;
    if (fell_back) {
      for (unsigned char b : ch) push(byte_token_[b]);
    } else if (unk_ >= 0) {
      if (!(fuse_unk_ && !sym.empty() && sym.back().id == unk_)) push(unk_);
    } else {
      throw InputError(fmt::format("'{}': the character '{}' (U+{:04X}) has no token, and the tokenizer has no "
                                   "unk_token or byte fallback",
                                   path_, ch, static_cast<uint32_t>(c)));
    }
  }
  struct Candidate {
    int32_t rank;
    int64_t pos;
    int32_t id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto merge_of = [&](int64_t left) -> const Merge* {
    const int64_t right = sym[static_cast<size_t>(left)].next;
    if (right < 0) return nullptr;
    const uint64_t key = (static_cast<uint64_t>(sym[static_cast<size_t>(left)].id) << 32) |
                         static_cast<uint32_t>(sym[static_cast<size_t>(right)].id);
    const auto it = merges_.find(key);
    return it == merges_.end() ? nullptr : &it->second;
  };
  auto offer = [&](int64_t left) {
    if (const Merge* m = left >= 0 ? merge_of(left) : nullptr) heap.push({m->rank, left, m->id});
  };
  for (int64_t i = 0; i + 1 < static_cast<int64_t>(sym.size()); ++i) offer(i);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = sym[static_cast<size_t>(top.pos)];
    const Merge* m = left.live ? merge_of(top.pos) : nullptr;
    if (!m || m->id != top.id) continue;  // gone, or the pair changed since
    Symbol& right = sym[static_cast<size_t>(left.next)];
    left.id = top.id;
    right.live = false;
    left.next = right.next;
    if (right.next >= 0) sym[static_cast<size_t>(right.next)].prev = top.pos;
    offer(left.prev);
    offer(top.pos);
  }
  for (const Symbol& s : sym)
    if (s.live) ids.push_back(s.id);
}

// The decoder's steps, each on every token's text, as the crate chains them
// (Fuse joins the tokens into one; with no decoder they are joined with
// spaces). Two departures, both so that the ids of a text decode to its
// bytes piece by piece (dtrain generate prints each token as it comes):
// byte-fallback tokens are their bytes, not U+FFFD where a character's bytes
// span tokens; and ids that continue a text (Position::continuation) keep
// what a decoder strips from a text's first token (Strip after Fuse,
// Metaspace's prepended replacement), or are joined after a space.
std::string HfTokenizer::decode(const std::vector<int32_t>& ids, Position at) const {
  std::vector<std::string> toks;
  for (int32_t id : ids)  // ids beyond are a model's padding rows: nothing
    if (id >= 0 && static_cast<size_t>(id) < token_of_.size()) toks.push_back(token_of_[static_cast<size_t>(id)]);
  const bool starts = at == Position::start;
  if (decoder_.empty()) {
    std::string out;
    for (size_t t = 0; t < toks.size(); ++t) out += (t > 0 || !starts ? " " : "") + toks[t];
    return out;
  }
  bool fused = false;
  auto replace_all = [](std::string& tok, const std::string& what, const std::string& with) {
    std::string out;
    for (size_t i = 0;;) {
      const size_t hit = tok.find(what, i);
      out.append(tok, i, hit == std::string::npos ? std::string::npos : hit - i);
      if (hit == std::string::npos) break;
      out += with;
      i = hit + what.size();
    }
    tok.swap(out);
  };
  for (const Decode& d : decoder_) {
    if (d.kind == Decode::fuse) {
      std::string all;
      for (const std::string& t : toks) all += t;
      toks.assign(1, std::move(all));
      fused = true;
      continue;
    }
    for (size_t t = 0; t < toks.size(); ++t) {
      std::string& tok = toks[t];
      switch (d.kind) {
        case Decode::byte_level: {  // a token with a character outside the map stays as it is
          std::string out;
          for (char32_t c : text::utf8_decode(tok)) {
            const auto it = bytes_.byte_of.find(c);
            if (it == bytes_.byte_of.end()) {
              out = tok;
              break;
            }
            out += static_cast<char>(it->second);
          }
          tok.swap(out);
          break;
        }
        case Decode::replace:
          replace_all(tok, d.text, d.with);
          break;
        case Decode::byte_fallback: {
          unsigned hex = 0;
          if (!fused && tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' &&
              std::sscanf(tok.c_str() + 3, "%2X", &hex) == 1)
            tok.assign(1, static_cast<char>(hex));
          break;
        }
        case Decode::strip: {
          // On every token; after Fuse on the one text, whose start a
          // continuation does not have.
          const bool start_here = !fused || (t == 0 && starts);
          for (int k = 0; start_here && k < d.start && tok.compare(0, d.text.size(), d.text) == 0; ++k)
            tok.erase(0, d.text.size());
          for (int k = 0; k < d.stop && tok.size() >= d.text.size() &&
                          tok.compare(tok.size() - d.text.size(), d.text.size(), d.text) == 0;
               ++k)
            tok.erase(tok.size() - d.text.size());
          break;
        }
        case Decode::metaspace:  // the first token's replacements go, the rest become spaces
          replace_all(tok, d.text, t == 0 && starts && d.start ? "" : d.with);
          break;
        case Decode::fuse:
          break;
      }
    }
  }
  std::string out;
  for (const std::string& t : toks) out += t;
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> hf_tokenizer(const std::string& dir) { return std::make_unique<HfTokenizer>(dir); }

}  // namespace dtrain
