// format_bytes: binary units, one decimal, whole bytes below 1 KiB.
#include <doctest/doctest.h>

#include <cmath>

#include "core/format_bytes.h"

using dtrain::format_bytes;

TEST_CASE("format_bytes reads in binary units with one decimal") {
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1024) == "1.0 KiB");
  CHECK(format_bytes(1536) == "1.5 KiB");
  CHECK(format_bytes(474.7 * 1024 * 1024) == "474.7 MiB");
  CHECK(format_bytes(1.5 * 1024 * 1024 * 1024) == "1.5 GiB");
  CHECK(format_bytes(80.0 * (1ull << 30)) == "80.0 GiB");
  CHECK(format_bytes(3.0 * (1ull << 40)) == "3.0 TiB");
  CHECK(format_bytes(2.0 * (1ull << 60)) == "2.0 EiB");
  CHECK(format_bytes(2048.0 * (1ull << 60)) == "2e+03 EiB");
  CHECK(format_bytes(-1024.0 * 1024) == "-1.0 MiB");
  CHECK(format_bytes(std::nan("")) == "nan B");
}
