// GPT-2's byte-level BPE (see tools/gpt2_bpe.py for the steps, which this
// follows one for one) and the byte tokenizer.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_kind.h"
#include "data/tokenizer.h"
#include "data/unicode.h"

namespace dtrain {

namespace {

using text::is_letter;
using text::is_number;
using text::utf8_append;
using text::utf8_decode;
// JavaScript's \s: what the reference encoder's pattern means by whitespace.
bool is_space(char32_t c) { return text::is_js_space(c); }
bool is_other(char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

// GPT-2's pattern: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::vector<std::pair<size_t, size_t>> pre_tokenize(const std::vector<char32_t>& t) {
  std::vector<std::pair<size_t, size_t>> out;  // [begin, end) code point ranges
  const size_t n = t.size();
  static const std::u32string contractions[] = {U"s", U"t", U"re", U"ve", U"m", U"ll", U"d"};
  for (size_t i = 0; i < n;) {
    if (t[i] == '\'') {
      bool found = false;
      for (const auto& c : contractions)
        if (i + 1 + c.size() <= n && std::equal(c.begin(), c.end(), t.begin() + i + 1)) {
          out.emplace_back(i, i + 1 + c.size());
          i += 1 + c.size();
          found = true;
          break;
        }
      if (found) continue;
    }
    bool matched = false;
    for (bool (*cls)(char32_t) : {is_letter, is_number, is_other}) {
      const size_t j = t[i] == ' ' && i + 1 < n && cls(t[i + 1]) ? i + 1 : i;
      if (j < n && cls(t[j])) {
        size_t k = j;
        while (k < n && cls(t[k])) ++k;
        out.emplace_back(i, k);
        i = k;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    size_t k = i;  // t[i] is whitespace
    while (k < n && is_space(t[k])) ++k;
    if (k < n && k - i > 1) --k;  // the last space prefixes the next piece
    out.emplace_back(i, k);
    i = k;
  }
  return out;
}

class ByteTokenizer : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  int64_t vocab_size() const override { return 256; }
  std::vector<int32_t> encode(const std::string& s, Specials) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : s) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids, Position) const override {
    std::string s;
    for (int32_t id : ids) s += static_cast<char>(id & 0xFF);
    return s;
  }
};

class Gpt2Tokenizer : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(const std::string& dir) {
    // bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n.
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
    std::vector<char32_t> cs(bs.begin(), bs.end());
    for (int b = 0, n = 0; b < 256; ++b)
      if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
        bs.push_back(b);
        cs.push_back(static_cast<char32_t>(256 + n++));
      }
    for (size_t i = 0; i < bs.size(); ++i) {
      utf8_append(byte_symbol_[bs[i]], cs[i]);
      byte_of_[cs[i]] = static_cast<unsigned char>(bs[i]);
    }
    const Gpt2TokenizerFiles files = gpt2_tokenizer_files(dir);
    const std::string& enc_path = files.vocab;
    require_regular_file(enc_path, "the GPT-2 tokenizer's vocabulary (JSON)");
    std::ifstream ef(enc_path);
    if (!ef) throw InputError(fmt::format("'{}': cannot open (the GPT-2 tokenizer's vocabulary)", enc_path));
    try {
      const nlohmann::json j = nlohmann::json::parse(ef);
      for (const auto& [sym, id] : j.items()) {
        const int64_t v = id.get<int64_t>();
        if (v < 0 || v > 1'000'000) throw InputError(fmt::format("'{}': id {} of '{}'", enc_path, v, sym));
        if (static_cast<size_t>(v) >= decoder_.size()) decoder_.resize(v + 1);
        decoder_[v] = sym;
        encoder_[sym] = static_cast<int32_t>(v);
      }
    } catch (const nlohmann::json::exception& e) {
      throw InputError(fmt::format("'{}': not a JSON object of ids: {}", enc_path, e.what()));
    }
    const std::string& bpe_path = files.merges;
    require_regular_file(bpe_path, "the GPT-2 tokenizer's merges (text)");
    std::ifstream bf(bpe_path);
    if (!bf) throw InputError(fmt::format("'{}': cannot open (the GPT-2 tokenizer's merges)", bpe_path));
    std::string line;
    std::getline(bf, line);  // "#version: 0.2"
    for (int32_t rank = 0; std::getline(bf, line);) {
      const size_t sp = line.find(' ');
      if (line.empty()) continue;
      if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size())
        throw InputError(fmt::format("'{}': merge {}: expected \"a b\", got \"{}\"", bpe_path, rank + 1, line));
      ranks_.emplace(line, rank++);
    }
  }

  std::string name() const override { return "gpt2"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(decoder_.size()); }
  int32_t end_of_text() const override {
    auto it = encoder_.find("<|endoftext|>");
    return it == encoder_.end() ? -1 : it->second;
  }

  std::vector<int32_t> encode(const std::string& text, Specials specials) const override {
    Words words;
    std::vector<int32_t> ids;
    encode_into(text, specials, words, ids);
    return ids;
  }

  // A batch's documents share what their words encode to (a corpus repeats
  // its words: most pieces are looked up, not merged again).
  std::vector<std::vector<int32_t>> encode_documents(std::span<const std::string> docs,
                                                     Specials specials) const override {
    Words words;
    std::vector<std::vector<int32_t>> out(docs.size());
    for (size_t d = 0; d < docs.size(); ++d) {
      try {
        encode_into(docs[d], specials, words, out[d]);
      } catch (const InputError& e) {
        throw InputError(fmt::format("document {}: {}", d, e.what()));
      }
    }
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids, Position) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || static_cast<size_t>(id) >= decoder_.size()) continue;  // a model's padding rows
      for (char32_t c : utf8_decode(decoder_[id])) {
        auto it = byte_of_.find(c);
        if (it != byte_of_.end()) out += static_cast<char>(it->second);
      }
    }
    return out;
  }

 private:
  // A piece's UTF-8 bytes -> its ids: the BPE of each distinct piece once.
  using Words = std::unordered_map<std::string, std::vector<int32_t>>;

  void encode_into(const std::string& text, Specials specials, Words& words, std::vector<int32_t>& ids) const {
    // GPT-2's one special token, <|endoftext|>: its id where the text spells
    // it (as Hugging Face's GPT2Tokenizer and tiktoken's allowed_special do),
    // each piece between encoded on its own; as_text, the spelling's pieces.
    static constexpr std::string_view kEot = "<|endoftext|>";
    if (const int32_t eot = end_of_text(); specials == Specials::parse && eot >= 0 && text.find(kEot) != std::string::npos) {
      size_t at = 0;
      for (size_t hit; (hit = text.find(kEot, at)) != std::string::npos; at = hit + kEot.size()) {
        encode_into(text.substr(at, hit - at), Specials::as_text, words, ids);
        ids.push_back(eot);
      }
      encode_into(text.substr(at), Specials::as_text, words, ids);
      return;
    }
    const std::vector<char32_t> cps = utf8_decode(text);
    std::string bytes;
    for (const auto& [b, e] : pre_tokenize(cps)) {
      bytes.clear();
      for (size_t i = b; i < e; ++i) utf8_append(bytes, cps[i]);
      auto [it, fresh] = words.try_emplace(bytes);
      if (fresh) {
        std::vector<std::string> word;
        for (unsigned char c : bytes) word.push_back(byte_symbol_[c]);
        bpe(word);
        for (const std::string& sym : word) {
          auto id = encoder_.find(sym);
          if (id == encoder_.end()) {
            words.erase(it);
            throw InputError(fmt::format("GPT-2 tokenizer: no id for symbol '{}'", sym));
          }
          it->second.push_back(id->second);
        }
      }
      ids.insert(ids.end(), it->second.begin(), it->second.end());
    }
  }

  // Merges the adjacent pair of lowest rank, all its occurrences left to
  // right, until no pair has a rank.
  void bpe(std::vector<std::string>& word) const {
    while (word.size() > 1) {
      int32_t best = std::numeric_limits<int32_t>::max();
      size_t at = 0;
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = ranks_.find(word[i] + " " + word[i + 1]);
        if (it != ranks_.end() && it->second < best) {
          best = it->second;
          at = i;
        }
      }
      if (best == std::numeric_limits<int32_t>::max()) return;
      const std::string first = word[at], second = word[at + 1];
      std::vector<std::string> merged;
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
          merged.push_back(first + second);
          i += 2;
        } else {
          merged.push_back(word[i++]);
        }
      }
      word.swap(merged);
    }
  }

  std::string byte_symbol_[256];
  std::unordered_map<char32_t, unsigned char> byte_of_;
  std::unordered_map<std::string, int32_t> encoder_;
  std::vector<std::string> decoder_;
  std::unordered_map<std::string, int32_t> ranks_;  // "a b" -> merge rank
};

}  // namespace

std::vector<std::vector<int32_t>> Tokenizer::encode_documents(std::span<const std::string> docs,
                                                              Specials specials) const {
  std::vector<std::vector<int32_t>> out;
  out.reserve(docs.size());
  for (size_t d = 0; d < docs.size(); ++d) {
    try {
      out.push_back(encode(docs[d], specials));
    } catch (const InputError& e) {
      throw InputError(fmt::format("document {}: {}", d, e.what()));
    }
  }
  return out;
}

std::unique_ptr<Tokenizer> byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

Gpt2TokenizerFiles gpt2_tokenizer_files(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::exists(d / "encoder.json", ec) && fs::is_regular_file(d / "vocab.json", ec) &&
      fs::is_regular_file(d / "merges.txt", ec))
    return {(d / "vocab.json").string(), (d / "merges.txt").string()};
  return {(d / "encoder.json").string(), (d / "vocab.bpe").string()};
}

std::unique_ptr<Tokenizer> gpt2_tokenizer(const std::string& dir) { return std::make_unique<Gpt2Tokenizer>(dir); }

std::unique_ptr<Tokenizer> make_tokenizer(const DataConfig& data, const std::string& dir_override) {
  if (data.tokenizer == "gpt2") return gpt2_tokenizer(dir_override.empty() ? data.tokenizer_dir : dir_override);
  if (data.tokenizer == "hf") return hf_tokenizer(dir_override.empty() ? data.tokenizer_dir : dir_override);
  if (data.tokenizer == "byte" || data.tokenizer.empty()) {
    if (!dir_override.empty())
      throw ConfigError(fmt::format("'{}': byte-level tokens (data.tokenizer = \"byte\") have no tokenizer files to "
                                    "read",
                                    dir_override));
    return byte_tokenizer();
  }
  throw ConfigError(
      fmt::format("data.tokenizer: expected \"byte\", \"gpt2\" or \"hf\", got \"{}\"", data.tokenizer));
}

void check_tokenizer_fits(const Tokenizer& tok, int64_t vocab_size, std::string_view what, const std::string& dir) {
  if (tok.vocab_size() > vocab_size)
    throw ConfigError(fmt::format("{}: the tokenizer in '{}' has {} ids but the model has {} rows (model.vocab_size): "
                                  "not the tokenizer it was trained with",
                                  what, dir, tok.vocab_size(), vocab_size));
}

}  // namespace dtrain
