// UTF-8 and the Unicode character classes the tokenizers' pre-tokenizers
// split on (lib/data/gpt2_bpe.cpp, hf_tokenizer.cpp). Letters (\p{L}) and
// numbers (\p{N}) are Unicode's general categories, from the tables
// tools/gen_unicode_classes.py writes.
#pragma once

#include <string>
#include <vector>

namespace dtrain::text {

// Code points of UTF-8 text; throws InputError naming the offset of the first
// malformed byte.
std::vector<char32_t> utf8_decode(const std::string& s);
void utf8_append(std::string& s, char32_t c);
std::string utf8_encode(const char32_t* first, const char32_t* last);

bool is_letter(char32_t c);  // \p{L}
bool is_number(char32_t c);  // \p{N}
// JavaScript's \s (what npm's gpt-3-encoder splits on).
bool is_js_space(char32_t c);
// Oniguruma's \s, Unicode's White_Space property (what Hugging Face's
// tokenizers split on): JavaScript's without U+FEFF, with U+0085.
bool is_unicode_space(char32_t c);

// Unicode's canonical composition, normalization form C (UAX #15): text
// decomposed canonically, its combining marks in canonical order, then
// composed (Qwen 2's tokenizer normalizes with it). Text of code points below
// U+0300 is returned as it is. Throws InputError for text that is not UTF-8.
std::string nfc(const std::string& utf8);
// Canonical combining class (0 for starters).
int combining_class(char32_t c);

}  // namespace dtrain::text
