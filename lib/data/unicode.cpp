#include "data/unicode.h"

#include <algorithm>
#include <cstddef>

#include <fmt/format.h>

#include "core/error.h"

namespace dtrain::text {

namespace {

struct CodeRange {
  char32_t lo, hi;
};
#include "data/unicode_classes.inc"

struct CombiningRange {
  char32_t lo, hi;
  int ccc;
};
struct Decomposition {
  char32_t cp;
  int offset, length;
};
struct Composition {
  char32_t first, second, composite;
};
#include "data/unicode_nfc.inc"

// Hangul syllables: composed and decomposed by arithmetic (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose(char32_t c, std::u32string& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out += kLBase + s / kNCount;
    out += kVBase + (s % kNCount) / kTCount;
    if (s % kTCount) out += kTBase + s % kTCount;
    return;
  }
  const Decomposition* end = std::end(kDecompositions);
  const Decomposition* it =
      std::lower_bound(std::begin(kDecompositions), end, c, [](const Decomposition& d, char32_t v) { return d.cp < v; });
  if (it != end && it->cp == c) {
    out.append(kDecompositionData + it->offset, static_cast<size_t>(it->length));
  } else {
    out += c;
  }
}

// The primary composite of `a` then `b`, or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const Composition* end = std::end(kCompositions);
  const Composition* it = std::lower_bound(std::begin(kCompositions), end, Composition{a, b, 0},
                                           [](const Composition& x, const Composition& y) {
                                             return x.first != y.first ? x.first < y.first : x.second < y.second;
                                           });
  return it != end && it->first == a && it->second == b ? it->composite : 0;
}

template <size_t N>
bool in_ranges(const CodeRange (&r)[N], char32_t c) {
  const CodeRange* it = std::upper_bound(r, r + N, c, [](char32_t v, const CodeRange& x) { return v < x.lo; });
  return it != r && c <= (it - 1)->hi;
}

}  // namespace

bool is_letter(char32_t c) { return in_ranges(kLetterRanges, c); }
bool is_number(char32_t c) { return in_ranges(kNumberRanges, c); }

bool is_js_space(char32_t c) {
  switch (c) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ': case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: case 0xFEFF:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_unicode_space(char32_t c) { return c == 0x85 || (c != 0xFEFF && is_js_space(c)); }

int combining_class(char32_t c) {
  const CombiningRange* end = std::end(kCombiningRanges);
  const CombiningRange* it = std::upper_bound(std::begin(kCombiningRanges), end, c,
                                              [](char32_t v, const CombiningRange& r) { return v < r.lo; });
  return it != std::begin(kCombiningRanges) && c <= (it - 1)->hi ? (it - 1)->ccc : 0;
}

std::string nfc(const std::string& utf8) {
  const std::vector<char32_t> cps = utf8_decode(utf8);
  if (std::all_of(cps.begin(), cps.end(), [](char32_t c) { return c < 0x300; })) return utf8;
  // Decompose, then put each run of combining marks in canonical order
  // (a stable sort by class: marks of one class keep their order).
  std::u32string d;
  d.reserve(cps.size());
  for (char32_t c : cps) decompose(c, d);
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + static_cast<std::ptrdiff_t>(i), d.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Compose: each character with the last starter, unless a character
  // between them blocks it (one of class 0, or of a class at least its own).
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  int last_class = 0;  // of the last character appended
  for (char32_t c : d) {
    const int cc = combining_class(c);
    if (starter != std::u32string::npos) {
      const bool adjacent = starter + 1 == out.size();
      if (adjacent || (last_class != 0 && last_class < cc)) {
        if (const char32_t comp = compose(out[starter], c); comp != 0) {
          out[starter] = comp;
          continue;
        }
      }
    }
    if (cc == 0) starter = out.size();
    last_class = cc;
    out += c;
  }
  return utf8_encode(out.data(), out.data() + out.size());
}

std::vector<char32_t> utf8_decode(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    // Well-formed UTF-8 only (Unicode 3.9, table 3-7): no overlong forms
    // (C0, C1, E0 80-9F, F0 80-8F), no surrogates (ED A0-BF), nothing past
    // U+10FFFF (F4 90-BF, F5-FF).
    const int n = b < 0x80 ? 1 : b < 0xC2 ? 0 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF5 ? 4 : 0;
    if (n == 0 || i + n > s.size())
      throw InputError(fmt::format("text is not valid UTF-8 (byte 0x{:02x} at offset {})", b, i));
    const auto b1 = n > 1 ? static_cast<unsigned char>(s[i + 1]) : 0x80;
    const bool second_ok = n < 3 || (b == 0xE0 ? b1 >= 0xA0 : b == 0xED ? b1 < 0xA0 : b == 0xF0 ? b1 >= 0x90
                                                  : b == 0xF4                ? b1 < 0x90
                                                                             : true);
    char32_t c = n == 1 ? b : b & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
      const auto cb = static_cast<unsigned char>(s[i + k]);
      if ((cb >> 6) != 2 || !second_ok)
        throw InputError(fmt::format("text is not valid UTF-8 (offset {})", i + k));
      c = (c << 6) | (cb & 0x3F);
    }
    out.push_back(c);
    i += n;
  }
  return out;
}

void utf8_append(std::string& s, char32_t c) {
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (c >> 18));
    s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string utf8_encode(const char32_t* first, const char32_t* last) {
  std::string s;
  for (; first != last; ++first) utf8_append(s, *first);
  return s;
}

}  // namespace dtrain::text
