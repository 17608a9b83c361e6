// Hugging Face tokenizer.json files: any bytes either give a tokenizer that
// encodes and decodes a text of every kind of character, or throw
// InputError (data/tokenizer.h, hf_tokenizer).
#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.h"
#include "data/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch("tokenizer");
    if (system(("mkdir -p " + d).c_str()) != 0) std::abort();
    return d;
  }();
  {
    std::ofstream f(dir + "/tokenizer.json", std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const auto tok = dtrain::hf_tokenizer(dir);
    const std::string text = "In the beginning 1234 don't <bos> [MASK]  x\r\n\t\xC3\xA9\xE6\x97\xA5\xF0\x9F\x99\x82 <|endoftext|>";
    for (auto specials : {dtrain::Tokenizer::Specials::parse, dtrain::Tokenizer::Specials::as_text}) {
      const std::vector<int32_t> ids = tok->encode(text, specials);
      volatile size_t n = tok->decode(ids).size() + tok->decode(ids, dtrain::Tokenizer::Position::continuation).size();
      (void)n;
    }
    (void)tok->decode({-1, 0, 1, 1 << 30});
  } catch (const dtrain::InputError&) {
  }
  return 0;
}
