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
// or i; `fold`: ASCII case-insensitive, as (?i:...).
size_t contraction_end(const char32_t* t, size_t n, size_t i, bool fold) {
  static const std::u32string kTails[] = {U"s", U"t", U"re", U"ve", U"m", U"ll", U"d"};
  for (const std::u32string& tail : kTails) {
    if (i + 1 + tail.size() > n) continue;
    bool same = true;
    for (size_t k = 0; k < tail.size() && same; ++k) {
      char32_t c = t[i + 1 + k];
      if (fold && c >= 'A' && c <= 'Z') c += 'a' - 'A';
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

// Ids at most this many (the largest vocabularies hold about 260k): a file
// naming id 2^31 - 2 is refused, not answered with an 8 GiB table.
constexpr int64_t kMaxIds = int64_t{1} << 24;

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool lstrip = false, rstrip = false;
};

class HfTokenizer : public Tokenizer {
 public:
  explicit HfTokenizer(const std::string& dir);

  std::string name() const override { return "hf"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(token_of_.size()); }
  int32_t end_of_text() const override { return eos_; }
  int32_t begin_of_text() const override { return bos_; }
  std::vector<int32_t> encode(const std::string& utf8, Specials specials) const override;
  std::string decode(const std::vector<int32_t>& ids, Position at) const override;

 private:
  // The text between added tokens: normalized, pre-tokenized, each piece BPE'd.
  void encode_text(const std::string& s, bool at_start, std::unordered_map<std::string, std::vector<int32_t>>& cache,
                   std::vector<int32_t>& ids) const;
  void bpe(const std::string& piece, std::vector<int32_t>& ids) const;
  [[noreturn]] void refuse(const std::string& key, const std::string& what) const;
  void read_normalizer(const json& j, const std::string& key);
  void read_pre_tokenizer(const json& j, const std::string& key);
  void read_decoder(const json& j, const std::string& key);
  void read_model(const json& m);
  void read_specials(const json& root, const std::string& dir);

  std::string path_;
  // normalizer: Prepend, then Replace steps, in the file's order
  struct Normalize {
    enum Kind { prepend, replace, nfc } kind = nfc;
    std::string text, with;  // Prepend(text), Replace(text -> with)
  };
  std::vector<Normalize> normalizer_;
  std::vector<PreStep> pre_;
  bool byte_level_ = false;  // pieces go through the byte map before BPE
  // decoder: each step maps every token's text, in the file's order
  struct Decode {
    enum Kind { byte_level, replace, byte_fallback, fuse, strip, metaspace } kind = fuse;
    std::string text, with;  // replace: text -> with; strip: the character; metaspace: its replacement
    int start = 0, stop = 0;  // strip: up to this many from the start and the end; metaspace: 1 = drop
                              // the first token's replacements (a prepend scheme other than "never")
  };
  std::vector<Decode> decoder_;
  ByteMap bytes_;
  // model
  std::unordered_map<std::string, int32_t> id_of_;  // the model's vocabulary and the added tokens
  std::vector<std::string> token_of_;               // id -> token ("" for an id nothing names)
  struct Merge {
    int32_t rank, id;
  };
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank and merged id
  bool ignore_merges_ = false, byte_fallback_ = false, fuse_unk_ = false;
  int32_t unk_ = -1;
  int32_t byte_token_[256];  // byte_fallback: <0xXX>
  std::vector<AddedToken> added_;  // longest first
  int32_t bos_ = -1, eos_ = -1;
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
  try {
    if (!root.contains("model") || !root["model"].is_object()) refuse("model", "missing (expected a BPE model)");
    read_model(root["model"]);
    read_normalizer(root.value("normalizer", json()), "normalizer");
    read_pre_tokenizer(root.value("pre_tokenizer", json()), "pre_tokenizer");
    read_decoder(root.value("decoder", json()), "decoder");
    const bool decodes_bytes =
        std::any_of(decoder_.begin(), decoder_.end(), [](const Decode& d) { return d.kind == Decode::byte_level; });
    if (byte_level_ != decodes_bytes)
      refuse("decoder", byte_level_ ? "the pre-tokenizer is ByteLevel but the decoder is not"
                                    : "the decoder is ByteLevel but the pre-tokenizer is not");
    read_specials(root, dir);
  } catch (const json::exception& e) {
    throw InputError(fmt::format("'{}': unexpected JSON: {}", path_, e.what()));
  }
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
      refuse("model.vocab", fmt::format("token '{}': expected an id from 0 to {}, got {}", tok, kMaxIds - 1, id.dump()));
    const auto v = id.get<int32_t>();
    if (static_cast<size_t>(v) >= token_of_.size()) token_of_.resize(static_cast<size_t>(v) + 1);
    token_of_[static_cast<size_t>(v)] = tok;
    id_of_[tok] = v;
  }
  if (m.contains("unk_token") && !m["unk_token"].is_null()) {
    const auto it = id_of_.find(m["unk_token"].get<std::string>());
    if (it == id_of_.end())
      refuse("model.unk_token", fmt::format("'{}' is not in the vocabulary", m["unk_token"].get<std::string>()));
    unk_ = it->second;
  }
  std::fill(std::begin(byte_token_), std::end(byte_token_), -1);
  if (byte_fallback_)
    for (int b = 0; b < 256; ++b)
      if (auto it = id_of_.find(fmt::format("<0x{:02X}>", b)); it != id_of_.end()) byte_token_[b] = it->second;
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
      refuse("model.merges", fmt::format("merge {}: expected \"a b\" or [\"a\", \"b\"], got {}", rank + 1, mg.dump()));
    }
    const auto ia = id_of_.find(a), ib = id_of_.find(b), iab = id_of_.find(a + b);
    if (ia == id_of_.end() || ib == id_of_.end() || iab == id_of_.end())
      refuse("model.merges", fmt::format("merge {} ('{}' '{}'): '{}' is not in the vocabulary", rank + 1, a, b,
                                         ia == id_of_.end() ? a : ib == id_of_.end() ? b : a + b));
    const uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    merges_.emplace(key, Merge{rank, iab->second});  // a repeated pair keeps its first rank, as the crate does
    ++rank;
  }
}

void HfTokenizer::read_normalizer(const json& j, const std::string& key) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (size_t i = 0; i < j.at("normalizers").size(); ++i)
      read_normalizer(j["normalizers"][i], fmt::format("{}.normalizers[{}]", key, i));
  } else if (type == "Prepend") {
    normalizer_.push_back({Normalize::prepend, j.at("prepend").get<std::string>(), ""});
  } else if (type == "Replace" && j.at("pattern").contains("String")) {
    const std::string from = j["pattern"]["String"].get<std::string>();
    if (from.empty()) refuse(key + ".pattern", "an empty string");
    normalizer_.push_back({Normalize::replace, from, j.at("content").get<std::string>()});
  } else if (type == "NFC") {
    normalizer_.push_back({Normalize::nfc, "", ""});
  } else {
    refuse(key, fmt::format("{} is not supported (expected none, NFC, or Prepend and Replace of a string)",
                            j.dump().substr(0, 160)));
  }
}

void HfTokenizer::read_pre_tokenizer(const json& j, const std::string& key) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (size_t i = 0; i < j.at("pretokenizers").size(); ++i)
      read_pre_tokenizer(j["pretokenizers"][i], fmt::format("{}.pretokenizers[{}]", key, i));
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
    // prepend_scheme since tokenizers 0.19; add_prefix_space before it.
    const std::string scheme =
        j.contains("prepend_scheme") ? j["prepend_scheme"].get<std::string>()
                                     : (j.value("add_prefix_space", true) ? "always" : "never");
    if (scheme != "always" && scheme != "first" && scheme != "never")
      refuse(key + ".prepend_scheme", fmt::format("\"{}\": expected \"always\", \"first\" or \"never\"", scheme));
    step.prepend = scheme == "always" ? PreStep::always : scheme == "first" ? PreStep::first : PreStep::never;
    step.split_pieces = j.value("split", true);
  } else if (type == "Split") {
    const json& p = j.at("pattern");
    const std::string re = p.contains("Regex") ? p["Regex"].get<std::string>() : "";
    if (re == kGpt2Regex) {
      step.regex = {Regex::gpt2, 0};
    } else if (re == kLlama3Regex) {
      step.regex = {Regex::cl100k, 3};
    } else if (re == kQwen2Regex) {
      step.regex = {Regex::cl100k, 1};
    } else {
      refuse(key + ".pattern", fmt::format("{} is not a pattern this tokenizer runs (GPT-2's, LLaMA 3's or "
                                           "Qwen 2's regex)",
                                           p.dump().substr(0, 160)));
    }
    if (j.value("behavior", "") != "Isolated" || j.value("invert", false))
      refuse(key, fmt::format("behavior \"{}\", invert {}: expected \"Isolated\", false", j.value("behavior", ""),
                              j.value("invert", false)));
  } else {
    refuse(key, fmt::format("{} is not supported (expected ByteLevel, Split, Digits, Metaspace or a Sequence of them)",
                            j.dump().substr(0, 160)));
  }
  pre_.push_back(step);
}

void HfTokenizer::read_decoder(const json& j, const std::string& key) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  Decode d;
  if (type == "Sequence") {
    for (size_t i = 0; i < j.at("decoders").size(); ++i)
      read_decoder(j["decoders"][i], fmt::format("{}.decoders[{}]", key, i));
    return;
  } else if (type == "ByteLevel") {
    d.kind = Decode::byte_level;
  } else if (type == "Replace" && j.at("pattern").contains("String")) {
    d = {Decode::replace, j["pattern"]["String"].get<std::string>(), j.at("content").get<std::string>()};
    if (d.text.empty()) refuse(key + ".pattern", "an empty string");
  } else if (type == "Metaspace") {
    d = {Decode::metaspace, j.value("replacement", std::string("\u2581")), " "};
    const std::string scheme = j.contains("prepend_scheme") ? j["prepend_scheme"].get<std::string>()
                                                            : (j.value("add_prefix_space", true) ? "always" : "never");
    d.start = scheme != "never";
  } else if (type == "ByteFallback") {
    d.kind = Decode::byte_fallback;
  } else if (type == "Fuse") {
    d.kind = Decode::fuse;
  } else if (type == "Strip") {
    d = {Decode::strip, j.at("content").get<std::string>(), "", j.value("start", 0), j.value("stop", 0)};
    if (text::utf8_decode(d.text).size() != 1 || d.start < 0 || d.stop < 0)
      refuse(key, fmt::format("{}: expected one character and counts from 0", j.dump()));
  } else {
    refuse(key, fmt::format("{} is not supported (expected ByteLevel, Metaspace, Replace of a string, ByteFallback, "
                            "Fuse, Strip or a Sequence of them)",
                            j.dump().substr(0, 160)));
  }
  decoder_.push_back(std::move(d));
}

void HfTokenizer::read_specials(const json& root, const std::string& dir) {
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    for (const json& t : root["added_tokens"]) {
      const json& id = t.at("id");
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxIds)
        refuse("added_tokens", fmt::format("{}: expected an id from 0 to {}", t.dump().substr(0, 120), kMaxIds - 1));
      AddedToken a{t.at("content").get<std::string>(), id.get<int32_t>(), t.value("lstrip", false),
                   t.value("rstrip", false)};
      if (a.content.empty()) refuse("added_tokens", fmt::format("{}: empty content", t.dump().substr(0, 120)));
      if (t.value("single_word", false))
        refuse("added_tokens", fmt::format("'{}': single_word is not supported", a.content));
      if (static_cast<size_t>(a.id) >= token_of_.size()) token_of_.resize(static_cast<size_t>(a.id) + 1);
      token_of_[static_cast<size_t>(a.id)] = a.content;
      id_of_[a.content] = a.id;
      added_.push_back(std::move(a));
    }
    std::stable_sort(added_.begin(), added_.end(),
                     [](const AddedToken& x, const AddedToken& y) { return x.content.size() > y.content.size(); });
  }
  // The document markers: tokenizer_config.json's bos_token and eos_token
  // (a string, or an object with its content), else the template's first
  // special token and the usual end-of-text names.
  auto id_named = [&](const json& v) -> int32_t {
    const json c = v.is_object() ? v.value("content", json()) : v;
    if (!c.is_string()) return -1;
    const auto it = id_of_.find(c.get<std::string>());
    return it == id_of_.end() ? -1 : it->second;
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
      !post["single"].empty() && post["single"][0].contains("SpecialToken"))
    bos_ = id_named(post["single"][0]["SpecialToken"].value("id", json()));
  for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>"})
    if (eos_ < 0) eos_ = id_named(json(name));
}

std::vector<int32_t> HfTokenizer::encode(const std::string& s, Specials specials) const {
  std::vector<int32_t> ids;
  std::unordered_map<std::string, std::vector<int32_t>> cache;  // a corpus repeats its words
  size_t from = 0;  // the text not yet encoded starts here
  if (specials == Specials::parse && !added_.empty()) {
    for (size_t i = 0; i < s.size();) {
      const AddedToken* hit = nullptr;
      for (const AddedToken& a : added_)  // longest first
        if (s.compare(i, a.content.size(), a.content) == 0) {
          hit = &a;
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      size_t begin = i, end = i + hit->content.size();
      if (hit->lstrip)
        while (begin > from && is_space(static_cast<unsigned char>(s[begin - 1]))) --begin;
      if (hit->rstrip)
        while (end < s.size() && is_space(static_cast<unsigned char>(s[end]))) ++end;
      encode_text(s.substr(from, begin - from), from == 0, cache, ids);
      ids.push_back(hit->id);
      from = i = end;
    }
  }
  encode_text(s.substr(from), from == 0, cache, ids);
  return ids;
}

void HfTokenizer::encode_text(const std::string& s, bool at_start,
                              std::unordered_map<std::string, std::vector<int32_t>>& cache,
                              std::vector<int32_t>& ids) const {
  if (s.empty()) return;
  text::utf8_decode(s);  // refuses text that is not UTF-8, naming the offset
  std::string norm = s;
  for (const Normalize& n : normalizer_) {
    if (n.kind == Normalize::prepend) {
      norm.insert(0, n.text);
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
  std::vector<std::string> pieces{std::move(norm)}, next;
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
// popped pair no longer there (a neighbour merged first) is skipped.
void HfTokenizer::bpe(const std::string& piece, std::vector<int32_t>& ids) const {
  if (ignore_merges_)
    if (auto it = id_of_.find(piece); it != id_of_.end()) {
      ids.push_back(it->second);
      return;
    }
  struct Symbol {
    int32_t id;
    int prev, next;  // -1: none
    bool live;
  };
  std::vector<Symbol> sym;
  const std::vector<char32_t> cps = text::utf8_decode(piece);
  for (char32_t c : cps) {
    std::string ch;
    text::utf8_append(ch, c);
    auto push = [&](int32_t id) {
      const int at = static_cast<int>(sym.size());
      sym.push_back({id, at - 1, -1, true});
      if (at > 0) sym[static_cast<size_t>(at - 1)].next = at;
    };
    if (auto it = id_of_.find(ch); it != id_of_.end()) {
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
    int pos;
    int32_t id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto merge_of = [&](int left) -> const Merge* {
    const int right = sym[static_cast<size_t>(left)].next;
    if (right < 0) return nullptr;
    const uint64_t key = (static_cast<uint64_t>(sym[static_cast<size_t>(left)].id) << 32) |
                         static_cast<uint32_t>(sym[static_cast<size_t>(right)].id);
    const auto it = merges_.find(key);
    return it == merges_.end() ? nullptr : &it->second;
  };
  auto offer = [&](int left) {
    if (const Merge* m = left >= 0 ? merge_of(left) : nullptr) heap.push({m->rank, left, m->id});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) offer(i);
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

// The decoder's steps on each token's text, the tokens then concatenated.
// Two departures from the crate, both so that the ids of a text decode to
// its bytes piece by piece (dtrain generate prints each token as it comes):
// byte-fallback tokens are their bytes, not U+FFFD where a character's
// bytes span tokens; and Strip applies to the text's first token (and last),
// which is where the crate's Fuse, always before it, leaves it acting, and
// not at all when the ids continue a text (Position::continuation).
std::string HfTokenizer::decode(const std::vector<int32_t>& ids, Position at) const {
  std::vector<std::string> toks;
  for (int32_t id : ids)
    if (id >= 0 && static_cast<size_t>(id) < token_of_.size()) toks.push_back(token_of_[static_cast<size_t>(id)]);
  // (ids beyond are a model's padding rows: nothing)
  for (const Decode& d : decoder_) {
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
        case Decode::replace: {
          std::string out;
          for (size_t i = 0;;) {
            const size_t hit = tok.find(d.text, i);
            out.append(tok, i, hit == std::string::npos ? std::string::npos : hit - i);
            if (hit == std::string::npos) break;
            out += d.with;
            i = hit + d.text.size();
          }
          tok.swap(out);
          break;
        }
        case Decode::byte_fallback: {
          unsigned hex = 0;
          if (tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' &&
              std::sscanf(tok.c_str() + 3, "%2X", &hex) == 1)
            tok.assign(1, static_cast<char>(hex));
          break;
        }
        case Decode::metaspace: {  // the first token's replacements go, the rest become spaces
          const bool drop = t == 0 && at == Position::start && d.start;
          std::string out;
          for (size_t i = 0;;) {
            const size_t hit = tok.find(d.text, i);
            out.append(tok, i, hit == std::string::npos ? std::string::npos : hit - i);
            if (hit == std::string::npos) break;
            if (!drop) out += d.with;
            i = hit + d.text.size();
          }
          tok.swap(out);
          break;
        }
        case Decode::fuse:
          break;  // the tokens are concatenated in the end
        case Decode::strip: {
          const bool first = t == 0 && at == Position::start, last = t + 1 == toks.size();
          for (int k = 0; first && k < d.start && tok.compare(0, d.text.size(), d.text) == 0; ++k)
            tok.erase(0, d.text.size());
          for (int k = 0; last && k < d.stop && tok.size() >= d.text.size() &&
                          tok.compare(tok.size() - d.text.size(), d.text.size(), d.text) == 0;
               ++k)
            tok.erase(tok.size() - d.text.size());
          break;
        }
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
