// Hugging Face tokenizer.json in C++ (data/tokenizer.h, hf_tokenizer): the
// ids of Hugging Face's tokenizers.js on varied texts for LLaMA 3's, LLaMA
// 2's, GPT-2's and Qwen 2.5's tokenizers and a small one with the remaining options
// (tests/fixtures/hf_tokenizer_cases_*.txt, from
// tools/fixtures/hf_tokenizer_cases.mjs), decoding back to the text; special
// tokens read or left as text; the document markers; and what it does not
// run refused by file and key.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/data_files.h"
#include "data/tokenizer.h"
#include "data/unicode.h"

using namespace dtrain;
using dtrain::testing::from_hex;

namespace {

const std::string kSource = DTRAIN_SOURCE_DIR;


struct Case {
  std::string text, decoded;  // decoded: what tokenizers.js decodes the ids to
  std::vector<int32_t> ids;
};

std::vector<Case> cases(const std::string& name) {
  std::ifstream f(kSource + "/tests/fixtures/hf_tokenizer_cases_" + name + ".txt");
  REQUIRE(f);
  std::vector<Case> out;
  for (std::string line; std::getline(f, line);) {
    const size_t tab = line.find('\t'), tab2 = line.find('\t', tab + 1);
    REQUIRE(tab2 != std::string::npos);
    Case c{from_hex(line.substr(0, tab)), from_hex(line.substr(tab + 1, tab2 - tab - 1)), {}};
    std::istringstream ids(line.substr(tab2 + 1));
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    out.push_back(std::move(c));
  }
  return out;
}

std::string dir_of(const std::string& name);

// LLaMA 2's tokenizer with a Metaspace pre-tokenizer (`pre`) instead of its
// normalizer, and `decoder` unless null, in the directory `name` of the
// temporary directory.
std::string llama2_as_metaspace(const std::string& name, const nlohmann::json& pre, const nlohmann::json& decoder) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / name;
  fs::create_directories(dir);
  std::ifstream in(dir_of("llama2") + "/tokenizer.json");
  nlohmann::json j = nlohmann::json::parse(in);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = pre;
  if (!decoder.is_null()) j["decoder"] = decoder;
  std::ofstream(dir / "tokenizer.json") << j.dump();
  fs::copy_file(dir_of("llama2") + "/tokenizer_config.json", dir / "tokenizer_config.json",
                fs::copy_options::overwrite_existing);
  return dir.string();
}

// As tools/fixtures/hf_tokenizer_cases.mjs makes it: Mistral v0.3's form.
std::string metaspace_variant() {
  return llama2_as_metaspace(
      "dtrain_hf_metaspace",
      {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}}, nullptr);
}

std::string dir_of(const std::string& name) {
  if (name == "llama2_metaspace") return metaspace_variant();
  const std::string dir = name == "tiny" ? kSource + "/tests/fixtures/hf_tokenizer_tiny" : kSource + "/data/tokenizers/" + name;
  REQUIRE_MESSAGE(std::filesystem::exists(dir + "/tokenizer.json"), dir, " is missing: run tools/setup.sh");
  return dir;
}

// The message of what `f` throws (InputError), or "(no error)".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("Hugging Face tokenizers in C++ give tokenizers.js's ids and decode them back") {
  struct Want {
    const char* name;
    int64_t vocab;
    int32_t bos, eos;
    size_t cases;
  };
  // GPT-2's tokenizer_config.json names <|endoftext|> as both. The tiny one
  // has neither file: its template's first token, and <|endoftext|> by name.
  // Qwen 2.5's (an instruct model's files) names <|im_end|> as its end and no begin.
  for (const Want w : {Want{"llama3", 128256, 128000, 128001, 18}, Want{"llama2", 32000, 1, 2, 18},
                       Want{"gpt2", 50257, 50256, 50256, 18}, Want{"qwen2_5", 151665, -1, 151645, 18},
                       Want{"llama2_metaspace", 32000, 1, 2, 18},
                       Want{"tiny", 560, 556, 557, 16}}) {
    CAPTURE(w.name);
    const auto tok = hf_tokenizer(dir_of(w.name));
    CHECK(tok->name() == "hf");
    CHECK(tok->vocab_size() == w.vocab);
    CHECK(tok->begin_of_text() == w.bos);
    CHECK(tok->end_of_text() == w.eos);
    int64_t tokens = 0;
    const std::vector<Case> all = cases(w.name);
    CHECK(all.size() == w.cases);
    int exact = 0;  // cases that decode back to the text itself
    for (const Case& c : all) {
      CAPTURE(c.text.substr(0, 60));
      const std::vector<int32_t> got = tok->encode(c.text);
      CHECK(got == c.ids);
      CHECK(tok->decode(got) == c.decoded);
      exact += tok->decode(got) == c.text;
      tokens += static_cast<int64_t>(got.size());
    }
    // Every case but LLaMA 2's text with <s> inside (its normalizer puts a
    // space after it), Qwen's decomposed text (NFC composes it) and the tiny
    // one's (a space before every piece; added tokens that take the spaces
    // beside them).
    const std::string name = w.name;
    // LLaMA 2's as Metaspace also loses the leading space of a text that
    // starts with one (its "first" scheme prepends nothing there, and the
    // decoder's Strip still takes one).
    CHECK(exact == (name == "tiny" ? 2 : name == "llama2_metaspace" ? 16 : name == "llama2" || name == "qwen2_5" ? 17 : 18));
    CHECK(tokens > 4000);
  }
}

TEST_CASE("Hugging Face tokenizers: special tokens read or left as text, pieces that continue a text") {
  const auto tok = hf_tokenizer(dir_of("llama3"));
  const std::string text = "a<|end_of_text|>b";
  const std::vector<int32_t> parsed = tok->encode(text);
  CHECK(parsed == std::vector<int32_t>{64, 128001, 65});
  const std::vector<int32_t> plain = tok->encode(text, Tokenizer::Specials::as_text);
  CHECK(plain.size() > 3);
  for (int32_t id : plain) CHECK(id < 128000);
  CHECK(tok->decode(plain) == text);
  CHECK(tok->decode(parsed) == text);

  // LLaMA 2's decoder drops the space its normalizer put in front of a text,
  // but not in front of a piece that continues one (dtrain generate's).
  const auto sp = hf_tokenizer(dir_of("llama2"));
  const std::vector<int32_t> ids = sp->encode("Hello world");
  REQUIRE(ids.size() >= 2);
  CHECK(sp->decode(ids) == "Hello world");
  CHECK(sp->decode({ids.back()}, Tokenizer::Position::continuation) == " world");
  std::string pieces = sp->decode({ids.front()});
  for (size_t i = 1; i < ids.size(); ++i) pieces += sp->decode({ids[i]}, Tokenizer::Position::continuation);
  CHECK(pieces == "Hello world");
  // Metaspace with split (the crate's default): every piece starts at a
  // replacement, so no token holds one after its start ("  " stays two "▁").
  {
    const nlohmann::json metaspace = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", true}};
    const std::string dir = llama2_as_metaspace(
        "dtrain_hf_metaspace_split", metaspace,
        {{"type", "Sequence"},
         {"decoders", nlohmann::json::array({metaspace, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}});
    const auto split = hf_tokenizer(dir);
    const std::string text = "a    b  c\n    d";
    const std::vector<int32_t> got = split->encode(text);
    int lone = 0;
    for (int32_t id : got) {
      const std::string t = split->decode({id}, Tokenizer::Position::continuation);
      CHECK(t.find(' ', 1) == std::string::npos);  // a replacement only at a token's start
      lone += t == " ";
    }
    CHECK(lone == 7);  // ▁a ▁ ▁ ▁ ▁b ▁ ▁c\n ▁ ▁ ▁ ▁d
    // Its decoder drops the first token's replacement (add_prefix_space) and
    // makes the others spaces.
    CHECK(split->decode(got) == text);
    CHECK(split->decode({got.front()}, Tokenizer::Position::continuation) == " a");
    std::filesystem::remove_all(dir);
  }
  // Byte fallback: a character without a token is its UTF-8 bytes' tokens.
  const std::vector<int32_t> rare = sp->encode("\xF0\x9F\xA6\x84");  // U+1F984
  CHECK(rare.size() >= 4);
  CHECK(sp->decode(rare) == "\xF0\x9F\xA6\x84");
  // Digits splits on every number, as the Rust crate's char::is_numeric
  // (tokenizers.js: ASCII digits only), and the tiny tokenizer's ByteLevel
  // puts a space in front of every piece.
  const auto tiny = hf_tokenizer(dir_of("tiny"));
  std::vector<int32_t> pieces_ids;
  for (const char* p : {"x", "\u0661", "\u0662", "\u2167"}) {
    const std::vector<int32_t> one = tiny->encode(p);
    pieces_ids.insert(pieces_ids.end(), one.begin(), one.end());
  }
  CHECK(tiny->encode("x\u0661\u0662\u2167") == pieces_ids);
  // Well-formed UTF-8 only: overlong forms, surrogates and code points past
  // U+10FFFF are refused, at their offset in the whole text.
  for (const char* bad : {"\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80"})
    CHECK_THROWS_AS(tok->encode(bad), InputError);
  CHECK(error_of([&] { tok->encode("hello<|end_of_text|> \xff"); }).find("offset 21") != std::string::npos);
  // Oniguruma's (?i) folds U+017F to s: "'\u017F" is a contraction piece.
  std::vector<int32_t> apart = tok->encode("'\u017F");
  const std::vector<int32_t> x = tok->encode("x");
  apart.insert(apart.end(), x.begin(), x.end());
  CHECK(tok->encode("'\u017Fx") == apart);
  // Added tokens that strip take whole characters of Unicode white space;
  // as text, only special ones are left in the text ("<|end" is not special).
  auto joined = [&](std::initializer_list<std::vector<int32_t>> parts) {
    std::vector<int32_t> all;
    for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
    return all;
  };
  CHECK(tiny->encode("x\u3000[MASK]\u00A0y") == joined({tiny->encode("x"), {558}, tiny->encode("y")}));
  CHECK(tiny->encode("\u00E0[MASK]") == joined({tiny->encode("\u00E0"), {558}}));
  CHECK(tiny->encode("a<|end", Tokenizer::Specials::as_text) == joined({tiny->encode("a"), {559}}));
  CHECK(tiny->encode("<bos>", Tokenizer::Specials::as_text) != std::vector<int32_t>{556});
  CHECK_THROWS_AS(tok->encode("bad \xff utf-8"), InputError);
  CHECK_THROWS_AS(sp->encode("bad \xc3"), InputError);
}

TEST_CASE("Hugging Face tokenizer files it cannot run are refused by file and key") {
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / "dtrain_hf_tok_test";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const std::string file = (tmp / "tokenizer.json").string();
  auto message = [&] { return error_of([&] { hf_tokenizer(tmp.string()); }); };
  CHECK(message().find("tokenizer.json") != std::string::npos);  // missing
  std::ofstream(file) << "{\"model\": ";
  CHECK(message().find("tokenizer.json': not JSON") != std::string::npos);

  std::ifstream in(dir_of("tiny") + "/tokenizer.json");
  const nlohmann::json good = nlohmann::json::parse(in);
  auto with = [&](const std::string& pointer, const nlohmann::json& value) {
    nlohmann::json j = good;
    j[nlohmann::json::json_pointer(pointer)] = value;
    std::ofstream(file) << j.dump();
    return message();
  };
  CHECK(with("/model/vocab/a", 1) == "(no error)");
  CHECK(with("/model/type", "WordPiece").find("model.type: \"WordPiece\" is not supported") != std::string::npos);
  CHECK(with("/normalizer", {{"type", "NFKC"}}).find("normalizer: {\"type\":\"NFKC\"} is not supported") !=
        std::string::npos);
  CHECK(with("/pre_tokenizer/pretokenizers/0", {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}},
                                                 {"behavior", "Isolated"}, {"invert", false}})
            .find("pre_tokenizer.pretokenizers[0].pattern: {\"Regex\":\"\\\\w+\"} is not a pattern") !=
        std::string::npos);
  CHECK(with("/pre_tokenizer/pretokenizers/0", {{"type", "Whitespace"}}).find("pre_tokenizer.pretokenizers[0]: ") !=
        std::string::npos);
  CHECK(with("/pre_tokenizer/pretokenizers/0", {{"type", "Metaspace"}, {"prepend_scheme", "sometimes"}})
            .find("pre_tokenizer.pretokenizers[0].prepend_scheme: \"sometimes\": expected") != std::string::npos);
  CHECK(with("/decoder", nullptr).find("decoder: the pre-tokenizer is ByteLevel but the decoder is not") !=
        std::string::npos);
  CHECK(with("/model/merges/3", "x y z").find("model.merges: merge 4: expected \"a b\"") != std::string::npos);
  CHECK(with("/model/merges/3", nlohmann::json::array({"Ġ", "unknown"})).find("merge 4 ('Ġ' 'unknown'): 'unknown' is not in the "
                                                       "vocabulary") != std::string::npos);
  // An id that would need gigabytes of table is refused, not allocated.
  CHECK(with("/model/vocab/a", -3).find("model.vocab: token 'a': expected an id from 0 to 2097151, got -3") !=
        std::string::npos);
  CHECK(with("/model/vocab/a", 2147483646).find("expected an id from 0 to 2097151") != std::string::npos);
  // An added token's id is the crate's, not the file's: the vocabulary's, or the next after it.
  CHECK(with("/added_tokens/1/id", 2147483646) == "(no error)");
  CHECK(hf_tokenizer(tmp.string())->encode("<|endoftext|>") == std::vector<int32_t>{557});
  // Hostile shapes: deep nesting is refused or described, never recursed into.
  nlohmann::json deep = "x";
  for (int i = 0; i < 40; ++i) deep = nlohmann::json::array({deep});
  CHECK(with("/model/merges/3", deep).find("(a JSON array nested too deep to show)") != std::string::npos);
  // ... also behind thousands of shallow elements (a look that stopped there
  // and dumped the rest overflowed the stack on 200,000 levels).
  {
    std::string text = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [[)";
    text += std::string(200000, '[') + std::string(200000, ']');
    for (int i = 0; i < 5000; ++i) text += ",1";
    text += "]]}}";
    std::ofstream(file) << text;
    CHECK(message().find("merge 1: expected \"a b\" or [\"a\", \"b\"], got (a JSON array of 5001 elements)") !=
          std::string::npos);
  }
  nlohmann::json seq = {{"type", "NFC"}};
  for (int i = 0; i < 12; ++i) seq = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array({seq})}};
  CHECK(with("/normalizer", seq).find("Sequences nested deeper than 8") != std::string::npos);
  CHECK(with("/decoder", {{"type", "Metaspace"}, {"replacement", ""}}).find("decoder.replacement: expected one character") !=
        std::string::npos);
  CHECK(with("/pre_tokenizer/pretokenizers/0", {{"type", "Metaspace"}, {"prepend_scheme", 1}})
            .find("pre_tokenizer: unexpected JSON") != std::string::npos);
  CHECK(with("/added_tokens/0/single_word", true).find("'<bos>': single_word is not supported") !=
        std::string::npos);
  CHECK(with("/model/continuing_subword_prefix", "##").find("model.continuing_subword_prefix: \"##\"") !=
        std::string::npos);
  CHECK(message().find(file) != std::string::npos);
  // A pair merged twice takes its last rank (the crate's map); with no
  // decoder the tokens are joined with spaces, as the crate joins them.
  std::ofstream(file) << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4},
                                       "merges": ["a b", "b c", "a b"]}})";
  const auto twice = hf_tokenizer(tmp.string());
  CHECK(twice->encode("abc") == std::vector<int32_t>{0, 4});
  CHECK(twice->decode({0, 4}) == "a bc");
  // No token, no unk_token, no byte fallback: the encode says which character.
  nlohmann::json j = good;
  j["model"]["vocab"].erase("a");
  for (auto it = j["model"]["merges"].begin(); it != j["model"]["merges"].end();)
    it = ((*it)[0] == "a" || (*it)[1] == "a" || (*it)[0].get<std::string>().find('a') != std::string::npos ||
          (*it)[1].get<std::string>().find('a') != std::string::npos)
             ? j["model"]["merges"].erase(it)
             : it + 1;
  std::ofstream(file) << j.dump();
  const auto tok = hf_tokenizer(tmp.string());
  CHECK(error_of([&] { tok->encode("xax"); }).find("the character 'a' (U+0061) has no token") != std::string::npos);
  fs::remove_all(tmp);
}

TEST_CASE("data.tokenizer = hf reads tokenizer_dir's tokenizer.json") {
  DataConfig d{};
  d.tokenizer = "hf";
  d.tokenizer_dir = dir_of("gpt2");
  CHECK(make_tokenizer(d)->vocab_size() == 50257);
  // The same ids as GPT-2's own files (gpt2_tokenizer) on a text.
  const std::string text = "It's 2024: don't panic!\n\n  Größe";
  CHECK(make_tokenizer(d)->encode(text) == gpt2_tokenizer(kSource + "/data/gpt2")->encode(text));
  d.tokenizer_dir = "/nonexistent";
  CHECK(error_of([&] { make_tokenizer(d); }).find("/nonexistent/tokenizer.json") != std::string::npos);
}

TEST_CASE("NFC gives Python's unicodedata.normalize on every code point it changes and on random sequences") {
  std::ifstream f(kSource + "/tests/fixtures/nfc_cases.txt");
  REQUIRE(f);
  int cases = 0, changed = 0;
  for (std::string line; std::getline(f, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    REQUIRE(tab != std::string::npos);
    const std::string text = from_hex(line.substr(0, tab)), want = from_hex(line.substr(tab + 1));
    CAPTURE(line.substr(0, tab));
    CHECK(text::nfc(text) == want);
    ++cases;
    changed += text != want;
  }
  CHECK(cases == 2620);
  CHECK(changed > 2000);
  // The classic cases: reordered marks, a singleton, an exclusion, Hangul.
  CHECK(text::nfc("a\u0323\u0302") == "\u1EAD");
  CHECK(text::nfc("a\u0302\u0323") == "\u1EAD");
  CHECK(text::nfc("\u212B") == "\u00C5");
  CHECK(text::nfc("\u0958") == "\u0915\u093C");
  CHECK(text::nfc("\u1100\u1161\u11A8") == "\uAC01");
  CHECK(text::nfc("plain ASCII") == "plain ASCII");
  CHECK_THROWS_AS(text::nfc("\xC3"), InputError);
}
