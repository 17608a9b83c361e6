// llm.c token files: any bytes either read as tokens below the vocabulary or
// throw InputError.
#include <cstdint>

#include "core/error.h"
#include "data/token_file.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::MemFile f(data, size);
  try {
    dtrain::TokenFile t(f.path());
    t.check_vocab(256);
    volatile uint32_t sum = 0;
    for (uint32_t x : t.read(0, t.size())) sum = sum + x;
  } catch (const dtrain::InputError&) {
  }
  return 0;
}
